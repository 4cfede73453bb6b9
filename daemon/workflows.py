"""Workflow state: `agents/sessions/<slug>/state.json` → `sessions` and `agents` rows.

Latest-state convergence: every distinct content the daemon observes is applied once
(keyed by its sha256); a partial or invalid file keeps the last good row and is tried
again when it changes; a deleted folder keeps its rows. Each observed status change
becomes one `agent_logs` row with event_category 'phase'.

These are workflow sessions (the `sessions` table, one per slug), not Claude Code sessions.
Storage goes through the Sink port (daemon/sink_port.py): `apply_workflow_state`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import structlog

from daemon.errors import PermanentRowError, RedactionBudgetError, UnknownDbError
from daemon.events import NUL_MARKER, escape_nul, escape_nul_json
from daemon.fs_names import is_utf8, printable
from daemon.redaction import Redactor
from daemon.schema import AGENT_STATUSES, SESSION_STATUSES, SESSION_TYPES
from daemon.sink_port import Sink, StateAgent, WorkflowState

log = structlog.get_logger("session_db.workflows")

STATE_FILE = "state.json"
STATE_MAX_BYTES = 64 * 2**20  # a state.json larger than this is not read (warned once)
# A planted symlink fails with ELOOP (never followed); a FIFO does not block the open.
STATE_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class StateRefused(OSError):
    """A state.json that is not a regular file of at most STATE_MAX_BYTES."""


def read_state(path: Path, limit: int = STATE_MAX_BYTES) -> bytes:
    """The bytes of a regular state.json, never through a symlink (OSError otherwise)."""
    fd = os.open(path, STATE_READ_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StateRefused(f"{path} is not a regular file")
        if st.st_size > limit:
            raise StateRefused(f"{path} is {st.st_size} bytes, over {limit}")
        chunks = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise StateRefused(f"{path} grew over {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


AGENT_ID_NAMESPACE = uuid.UUID("5e55104d-b0c5-4a0e-9d1b-5e55104db0c5")


def sessions_dir(root: Path) -> Path:
    """A watch root is a project root or an `agents/sessions` folder itself."""
    if root.name == "sessions" and root.parent.name == "agents":
        return root
    return root / "agents" / "sessions"


def state_files(roots: Iterable[Path]) -> list[Path]:
    out = []
    for root in roots:
        sdir = sessions_dir(root)
        try:
            children = sorted(os.scandir(sdir), key=lambda d: d.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for child in children:
            if child.name.startswith(".") or not child.is_dir():
                continue
            path = Path(child.path) / STATE_FILE
            if path.is_file():
                out.append(path)
    return out




def _str(value: Any) -> str | None:
    """A text value for a column: NUL escaped as in payloads (text columns cannot hold it)."""
    if not isinstance(value, str) or not value:
        return None
    return escape_nul(value) if "\x00" in value else value


MAX_DECIMAL_EXPONENT = 100  # larger claims stay in `state` only; a numeric column would refuse them


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or abs(number.adjusted()) > MAX_DECIMAL_EXPONENT:
        return None
    return number


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else None


def _uuid(value: Any, host: str, slug: str) -> uuid.UUID | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(AGENT_ID_NAMESPACE, f"{host}/{slug}/{value}")


@dataclass(frozen=True)
class SyncResult:
    """One applied state.json."""

    slug: str
    session_id: uuid.UUID
    agents: int
    phase_from: str | None
    phase_to: str | None


class SessionTracker:
    """Applies each new state.json content once; remembers hashes of what it has seen."""

    def __init__(self, sink: Sink, host: str, redactor: Redactor | None = None) -> None:
        self.sink = sink
        self.host = host
        # State is redacted like hook payloads. Default: the built-in rules; the daemon passes
        # the configured ones (wiring.tracker), so redact_keys/redact_patterns apply here too.
        self.redactor = Redactor() if redactor is None else redactor
        self._seen: dict[Path, str] = {}  # path → sha256 last handled (applied, or invalid)
        self._warned: set[tuple[str, str]] = set()

    def sync(
        self, roots: Iterable[Path], progress: Callable[[], object] = lambda: None
    ) -> list[SyncResult]:
        """Apply every changed state.json under the roots. Database errors propagate.

        `progress` runs before each file (the daemon feeds its watchdog from it)."""
        results = []
        for path in state_files(roots):
            progress()
            if not is_utf8(path):
                # A slug directory whose name is not UTF-8 cannot become a text column (nor a
                # JSON log field): skip it, with one warning naming it escaped.
                self._warn_once(printable(path), "undecodable", "state_path_undecodable")
                continue
            try:
                data = read_state(path)
            except OSError as exc:
                self._warn_once(str(path), "unreadable", "state_unreadable", error=str(exc))
                continue
            sha = hashlib.sha256(data).hexdigest()
            if self._seen.get(path) == sha:
                continue
            try:
                state = orjson.loads(data)
                if not isinstance(state, dict):
                    raise TypeError("top level is not an object")
            except (orjson.JSONDecodeError, TypeError) as exc:
                # Writers may write in place: keep the last good row, try again on change.
                self._warn_once(str(path), sha, "state_invalid", error=str(exc))
                self._seen[path] = sha
                continue
            try:
                mtime_ns = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            try:
                result = self._apply(path, data, state, sha, mtime_ns)
            except (PermanentRowError, UnknownDbError) as exc:
                self._warn_once(str(path), sha, "state_rejected", error=str(exc))
                self._seen[path] = sha
                continue
            self._seen[path] = sha
            if result is not None:
                results.append(result)
        return results

    def _warn_once(self, key: str, sha: str, event: str, **kw: Any) -> None:
        if (key, sha) not in self._warned:
            self._warned.add((key, sha))
            log.warning(event, path=key, **kw)

    def _apply(
        self, path: Path, raw: bytes, state: dict[str, Any], sha: str, mtime_ns: int
    ) -> SyncResult | None:
        slug = _str(state.get("slug")) or path.parent.name
        status = _str(state.get("status")) or _str(state.get("phase"))
        if status is not None and status not in SESSION_STATUSES:
            self._warn_once(
                str(path), sha, "state_status_unknown", status=status, kept_in="sessions.state"
            )
            status = None
        session_type = _str(state.get("session_type"))
        if session_type not in SESSION_TYPES:
            session_type = None
        stored, _ = escape_nul_json(raw) if NUL_MARKER in raw else (raw, False)
        try:
            stored = self.redactor.redact(stored).body
        except RedactionBudgetError as exc:
            self._warn_once(str(path), sha, "state_rejected", error=str(exc))
            return None
        agents = state.get("agents")
        agents_applied = [
            self._agent(slug, index, entry)
            for index, entry in enumerate(agents if isinstance(agents, list) else [])
            if isinstance(entry, dict)
        ]
        applied = self.sink.apply_workflow_state(
            WorkflowState(
                slug=slug,
                sha256=sha,
                state_path=str(path),
                mtime_ns=mtime_ns,
                title=_str(state.get("title")),
                status=status,
                session_type=session_type,
                working_dir=_str(state.get("working_dir")),
                total_cost=_decimal(state.get("total_cost")),
                state_json=stored.decode("utf-8"),
                created_at=_time(state.get("created_at")),
                completed_at=_time(state.get("completed_at")),
                agents=agents_applied,
            )
        )
        if applied is None:
            return None  # another daemon (or an earlier run) applied this content
        new_status, changed = applied.new_status, applied.changed
        log.info(
            "state_applied",
            slug=slug,
            status=new_status,
            agents=len(agents_applied),
            sha256=sha[:12],
        )
        return SyncResult(
            slug,
            applied.session_id,
            len(agents_applied),
            applied.old_status if changed else None,
            new_status if changed else None,
        )

    def _agent(self, slug: str, index: int, entry: dict[str, Any]) -> StateAgent:
        status = _str(entry.get("status"))
        sdk_session_id = _str(entry.get("sdk_session_id"))
        agent_id = _uuid(entry.get("id"), self.host, slug)
        if agent_id is None and not sdk_session_id:
            agent_id = uuid.uuid5(AGENT_ID_NAMESPACE, f"{self.host}/{slug}/#{index}")
        return StateAgent(
            id=agent_id,
            agent_type=_str(entry.get("agent_type")),
            sdk_session_id=sdk_session_id,
            model=_str(entry.get("model")),
            model_alias=_str(entry.get("model_alias")),
            status=status if status in AGENT_STATUSES else None,
            checkpoint_id=_str(entry.get("checkpoint_id")),
            cost_usd=_decimal(entry.get("cost_usd")),
            started_at=_time(entry.get("started_at")),
            completed_at=_time(entry.get("completed_at")),
        )
