"""`session-db quarantine`: look at, replay and (only when asked) purge quarantined spool files.

A quarantined event is `spool/quarantine/<name>` plus `<name>.reason.json`. Replay validates the
file again and moves it back into `new/` (same name, so the event_uid is unchanged and a replay
can never create a duplicate row); the daemon, or `ingest --once`, then ingests it. A file that
still does not parse stays where it is. Nothing here runs by itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from daemon.durable import fsync_dir
from daemon.events import BadEvent, parse
from daemon.fs_names import printable
from daemon.spool import REASON_SUFFIX, Spool

DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Entry:
    """One quarantined event."""

    name: str
    size: int
    reason: str
    detail: str
    quarantined_at: float
    record: dict[str, Any]

    @property
    def when(self) -> str:
        """The quarantine time as ISO 8601 UTC, as the text listing shows it."""
        return datetime.fromtimestamp(self.quarantined_at, UTC).isoformat(timespec="seconds")

    def as_json(self) -> dict[str, Any]:
        """The reason record plus name and size, with `quarantined_at` as ISO 8601 UTC."""
        return {**self.record, "name": self.name, "size": self.size, "quarantined_at": self.when}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m, 45s or 2w")
    return float(match.group(1)) * DURATION_UNITS_S[match.group(2)]


def entries(spool: Spool) -> list[Entry]:
    out = []
    for name in spool.quarantined():
        path = spool.quarantine / name
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        try:
            record = orjson.loads((spool.quarantine / (name + REASON_SUFFIX)).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            record = {"reason": "unknown", "detail": "reason file missing or unreadable"}
        out.append(
            Entry(
                name=printable(name),  # a non-UTF-8 name shown as \\xNN, not a crash
                size=st.st_size,
                reason=str(record.get("reason", "unknown")),
                detail=str(record.get("detail", "")),
                quarantined_at=float(record.get("quarantined_at") or st.st_mtime),
                record=record,
            )
        )
    return out


def show(spool: Spool, name: str, preview_bytes: int = 2000) -> str:
    path = spool.quarantine / name
    if "/" in name or not path.is_file():
        raise FileNotFoundError(
            f"{name}: not in {spool.quarantine} (see `session-db quarantine list`)"
        )
    sidecar = spool.quarantine / (name + REASON_SUFFIX)
    record = sidecar.read_text(errors="replace") if sidecar.exists() else "(no reason file)"
    data = path.read_bytes()
    preview = data[:preview_bytes].decode("utf-8", "replace")
    more = f"\n… ({len(data) - preview_bytes} more bytes)" if len(data) > preview_bytes else ""
    return f"{path}\n{record}\n--- {len(data)} bytes ---\n{preview}{more}\n"


@dataclass(frozen=True)
class ReplayResult:
    """What replay did with one file."""

    name: str
    outcome: str  # "replayed", "still_bad", "missing"
    detail: str = ""


def replay(spool: Spool, names: list[str], host: str) -> list[ReplayResult]:
    """Validate each file again; move the ones that parse back into `new/`."""
    results = []
    for name in names:
        src = spool.quarantine / name
        if "/" in name or not src.is_file():
            results.append(ReplayResult(name, "missing", f"not in {spool.quarantine}"))
            continue
        st = src.stat()
        try:
            # Validation only (the ingestor parses it again, redacting): redaction and the privacy
            # switches never reject a payload, so no redactor is needed to judge it.
            parse(name, src.read_bytes(), default_host=host, mtime_ns=st.st_mtime_ns)
        except BadEvent as bad:
            results.append(ReplayResult(name, "still_bad", f"{bad.reason}: {bad.detail}"))
            continue
        os.rename(src, spool.new / name)
        fsync_dir(spool.new)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool.quarantine / (name + REASON_SUFFIX))
        results.append(ReplayResult(name, "replayed"))
    return results


def purge(spool: Spool, older_than_s: float, *, dry_run: bool) -> list[Entry]:
    """Delete quarantined events (and their reason files) quarantined longer ago than the limit."""
    cutoff = time.time() - older_than_s
    doomed = [e for e in entries(spool) if e.quarantined_at < cutoff]
    if not dry_run:
        for e in doomed:
            for path in (spool.quarantine / e.name, spool.quarantine / (e.name + REASON_SUFFIX)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    return doomed
