"""Connection attempts of `session-db run` during an outage while hooks keep writing.

Issue 12 item 15: new spool files woke the loop and cut the backoff short (17 connect() calls
in 25 s). Prints numbers, asserts no timing.

    .venv/bin/python tests/bench/bench_outage_connects.py [--seconds 25] [--interval-s 0.1]

A TCP listener stands in for a dead server: it accepts each connection and closes it at once
(libpq: "server closed the connection unexpectedly", a transient error), counting accepts.
The daemon points at it (sslmode=disable: one TCP connection per attempt) while a spool file
arrives every --interval-s. The baseline printed beside the count is what the backoff alone
allows: the number of attempts whose every delay is drawn at its ceiling (the fewest) and at
zero (the most, bounded by the 0.5 s doubling: about log2 of the window plus one per minute).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.config import BACKOFF_BASE_S, BACKOFF_CAP_S
from tests.support.spoolwriter import write_event


def fewest_attempts(window_s: float) -> int:
    """Attempts when every delay is its ceiling (base·2^n, capped)."""
    t, n = 0.0, 1
    while True:
        t += min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**n)
        if t > window_s:
            return n
        n += 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--interval-s", type=float, default=0.1)
    args = ap.parse_args()
    accepts = 0
    stop = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.2)
        port = server.getsockname()[1]

        def serve() -> None:
            nonlocal accepts
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                accepts += 1
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_DB_")}
            env.update(
                SESSION_DB_URL=f"postgresql://nobody@127.0.0.1:{port}/none?sslmode=disable",
                SESSION_DB_SPOOL=str(root / "spool"),
                SESSION_DB_STATE_DIR=str(root / "state"),
                SESSION_DB_LOG_FORMAT="json",
                XDG_CONFIG_HOME=str(root / "config"),
            )
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            start = time.monotonic()
            files = 0
            try:
                while time.monotonic() - start < args.seconds:
                    if (root / "spool" / "new").is_dir():
                        write_event(root / "spool", b'{"hook_event_name":"Stop"}', event="Stop")
                        files += 1
                    time.sleep(args.interval_s)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(30)
                stop.set()
    print(
        f"outage {args.seconds:.0f} s, {files} spool files written: {accepts} connection attempts "
        f"(backoff alone: at least {fewest_attempts(args.seconds)}, "
        f"about {math.ceil(math.log2(args.seconds / BACKOFF_BASE_S)) + 1} at most in expectation); "
        f"daemon exit {code}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
