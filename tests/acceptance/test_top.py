"""`session-db top` against a live daemon: in a pseudo-terminal, and as plain lines through a pipe."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.acceptance.conftest import Daemon, Env, run_hook, wait_for
from tests.conftest import FIXTURES

HOOKS = FIXTURES / "hooks"
ROWS, COLUMNS = 40, 160


def start_session(env: Env, cwd: Path) -> str:
    """A new Claude session (SessionStart) that is running Bash right now (PreToolUse)."""
    sid = str(uuid.uuid4())
    for event in ("SessionStart", "PreToolUse"):
        payload = json.loads((HOOKS / f"{event}.json").read_text())
        payload.update(session_id=sid, cwd=str(cwd), transcript_path=str(cwd / f"{sid}.jsonl"))
        done = run_hook(env, json.dumps(payload).encode(), event)
        assert 0 == done.returncode, done.stderr
    return sid


class Terminal:
    """A child process on a pseudo-terminal of ROWS x COLUMNS; everything it draws is kept."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        with stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                args, stdin=slave, stdout=slave, stderr=err, env={**env, "TERM": "xterm-256color"},
                start_new_session=True,
            )  # fmt: skip
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def shows(self, text: str) -> Callable[[], bool]:
        return lambda: text.encode() in self.output

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        os.close(self.master)


def test_top_shows_a_session_started_while_it_runs_and_quits_on_q(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """In a pseudo-terminal, top draws a session that starts after it, with the tool it runs,
    and exits 0 when q is pressed."""
    daemon = start_daemon()
    daemon.wait_logged("database_up")
    term = Terminal([sys.executable, "-m", "daemon", "top"], env.vars(), tmp_path / "top.err")
    try:
        wait_for(term.shows("Session"), what="top's first frame")
        sid = start_session(env, tmp_path)
        wait_for(term.shows(sid[:8]), what="the new session in top")
        wait_for(term.shows("Bash"), what="the running tool in top")
        term.press(b"q")
        assert 0 == term.proc.wait(30), (tmp_path / "top.err").read_text()[-2000:]
    finally:
        term.close()
    assert b"\x1b[?1049h" in term.output  # drawn on the alternate screen, which it left again
    assert b"\x1b[?1049l" in term.output


def test_top_prints_plain_lines_when_stdout_is_not_a_terminal(
    env: Env, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """Through a pipe, top --once prints the summary and one plain line per agent, no escapes."""
    daemon = start_daemon()
    daemon.wait_logged("database_up")
    sid = start_session(env, tmp_path)

    def once() -> subprocess.CompletedProcess[str] | None:
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "top", "--once"],
            env=env.vars(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr[-2000:]
        return done if sid[:8] in done.stdout else None

    done = wait_for(once, what="the session in top --once")
    assert isinstance(done, subprocess.CompletedProcess)
    assert "\x1b" not in done.stdout
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith(sid[:8])]
    assert "main" in line
    assert "Bash" in line
    assert "sessions 1" in done.stdout.splitlines()[0]
