"""systemd notify protocol from the real daemon: READY, WATCHDOG while the database is down, STOPPING."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.acceptance.conftest import Env


def test_daemon_notifies_ready_watchdog_and_stopping_with_database_down(tmp_path: Path) -> None:
    """READY=1 comes after start-up without waiting for the database; WATCHDOG=1 keeps coming at half
    WATCHDOG_USEC while the database is unreachable; STOPPING=1 on SIGTERM, then exit 0."""
    env = Env(tmp_path, "postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        variables = {**env.vars(), "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run"],
            env=variables,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        messages: list[str] = []
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and messages.count("WATCHDOG=1") < 4:
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    continue
            proc.send_signal(signal.SIGTERM)
            assert 0 == proc.wait(15)
            while True:
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "READY=1" == messages[0]
    assert 1 == messages.count("READY=1")
    assert 4 <= messages.count("WATCHDOG=1")
    assert any(m.startswith("STATUS=db=down") for m in messages)
    assert "STOPPING=1" == messages[-1]
