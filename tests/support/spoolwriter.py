"""Write spool files in the hook's format from Python (integration tests, load generators).

Same steps as hooks/session-db-hook: exclusive create in tmp/, write, fsync, rename into new/.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Mapping
from pathlib import Path


def spool_name(host: str | None = None, now_ns: int | None = None) -> str:
    host = (host or socket.gethostname()).replace("/", "_").replace(":", "_")
    return f"{now_ns or time.time_ns()}.P{os.getpid()}R{secrets.token_hex(8)}.{host}"


def encode(
    payload: bytes,
    *,
    event: str | None,
    received_ns: int,
    host: str,
    env: Mapping[str, str] | None = None,
) -> bytes:
    lines = [
        b"session-db-spool: 1",
        f"received-ns: {received_ns}".encode(),
        f"host: {host}".encode(),
    ]
    if event:
        lines.append(f"event: {event}".encode())
    for key, value in (env or {}).items():
        lines.append(f"env.{key}: {value}".encode())
    return b"\n".join(lines) + b"\n\n" + payload


def write_event(
    spool: Path,
    payload: bytes,
    *,
    event: str | None = None,
    env: Mapping[str, str] | None = None,
    host: str | None = None,
    received_ns: int | None = None,
    fsync: bool = True,
) -> str:
    """Deliver one event; returns its name (the event_uid)."""
    host = host or socket.gethostname()
    received_ns = received_ns or time.time_ns()
    name = spool_name(host, received_ns)
    (spool / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
    (spool / "new").mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = spool / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, encode(payload, event=event, received_ns=received_ns, host=host, env=env))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, spool / "new" / name)
    return name


def write_raw(spool: Path, data: bytes, name: str | None = None) -> str:
    """Put arbitrary bytes straight into new/ (a foreign or broken writer)."""
    name = name or spool_name()
    (spool / "new").mkdir(parents=True, exist_ok=True, mode=0o700)
    (spool / "new" / name).write_bytes(data)
    return name
