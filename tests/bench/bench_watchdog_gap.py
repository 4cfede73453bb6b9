"""Longest gap between WATCHDOG=1 pings while the daemon drains a backlog of large files.

Issue 12 item 6: the watchdog was fed between batches only, so one batch of slow files (big
payloads, long redaction) could outlast WatchdogSec. Prints numbers, asserts no timing.

    .venv/bin/python tests/bench/bench_watchdog_gap.py [--files 400] [--kib 96] [--watchdog-usec 1000000]

Fills a spool with --files events of --kib KiB each (text with secrets for the redactor),
starts `session-db run` on a private embedded cluster with NOTIFY_SOCKET and WATCHDOG_USEC
set, and records every notify datagram until new/ is empty. The baseline is the ping interval
the daemon aims at (half of WATCHDOG_USEC): the longest gap is compared with it.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench._common import Daemon, bench_env, database, deliver  # noqa: E402

SECRETS = "password=hunter2 AKIAABCDEFGHIJKLMNOP ghp_" + "a" * 36 + " "


def payload(i: int, kib: int) -> bytes:
    text = (SECRETS + "lorem ipsum dolor sit amet " * 8) * (kib * 1024 // 300)
    return f'{{"hook_event_name":"PostToolUse","n":{i},"tool_response":"{text}"}}'.encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--kib", type=int, default=96)
    ap.add_argument("--watchdog-usec", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spool = root / "spool"
        with database(root / "state") as (url, _):
            for sub in ("tmp", "new"):
                (spool / sub).mkdir(parents=True, exist_ok=True)
            for i in range(args.files):
                deliver(
                    spool, payload(i, args.kib), event="PostToolUse", host="bench", fsync="none"
                )
            sock_path = root / "notify.sock"
            pings: list[float] = []
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(str(sock_path))
                sock.settimeout(0.2)
                done = threading.Event()

                def listen() -> None:
                    while not done.is_set():
                        try:
                            msg = sock.recv(4096).decode()
                        except TimeoutError:
                            continue
                        if msg in ("READY=1", "WATCHDOG=1"):  # from READY on
                            pings.append(time.monotonic())

                listener = threading.Thread(target=listen, daemon=True)
                listener.start()
                env = bench_env(
                    root / "state",
                    SESSION_DB_URL=url,
                    SESSION_DB_SPOOL=str(spool),
                    NOTIFY_SOCKET=str(sock_path),
                    WATCHDOG_USEC=str(args.watchdog_usec),
                )
                daemon = Daemon(env, root / "daemon.log")
                start = time.monotonic()
                daemon.start(timeout_s=600)
                while any((spool / "new").iterdir()):
                    time.sleep(0.05)
                drained = time.monotonic() - start
                time.sleep(args.watchdog_usec / 1e6)
                code = daemon.stop()
                done.set()
                listener.join()
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    print(
        f"{args.files} files x {args.kib} KiB drained in {drained:.1f} s; WATCHDOG=1 pings: "
        f"{len(pings) - 1} after READY=1, longest gap {max(gaps, default=0):.2f} s "
        f"(target interval {args.watchdog_usec / 2e6:.2f} s); daemon exit {code}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
