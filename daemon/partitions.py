"""agent_logs partitions: one per UTC month, created ahead of time, dropped whole when old.

agent_logs is partitioned by RANGE (occurred_at) (alembic revision 0005): a partition
`agent_logs_YYYY_MM` per UTC calendar month and `agent_logs_default` for rows whose month has
no partition, so a late or clock-skewed event is always stored. Partitions are created ahead
(the current month and AHEAD_MONTHS after it) by `session-db migrate`, by `session-db maintain`
(a timer), and best-effort by the daemon once a day. Creating or dropping a partition needs
the owner of the table and a brief ACCESS EXCLUSIVE lock on agent_logs; every such transaction
sets a short lock_timeout, so it gives up (and is retried) rather than queue behind an analyst's
long query while ingest queues behind it. An advisory lock keeps two hosts from maintaining at
the same time.

Rows of a month that landed in DEFAULT (no partition existed yet) are moved into the month's
partition when it is created: PostgreSQL refuses a new partition while DEFAULT holds rows of
its range.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar, cast

import psycopg
import structlog
from psycopg import errors as pgerr
from psycopg import sql

from daemon import db
from daemon.errors import PartitionBusyError, PartitionPermissionError

log = structlog.get_logger("session_db.partitions")

AHEAD_MONTHS = 3  # partitions exist for the current month and this many after it
LOCK_TIMEOUT_MS = (
    1000  # longest a partition DDL waits for its lock on agent_logs (ingest waits behind it)
)
MAINTAIN_ATTEMPTS = 5  # `maintain`/`prune`: tries per step when the lock is not granted in time
MAINTAIN_RETRY_S = 2.0  # pause between those tries
MAINTENANCE_LOCK_KEY = 0x5E55_10DB_0002  # advisory lock: one partition maintainer at a time
PARENT = "agent_logs"
DEFAULT_PARTITION = "agent_logs_default"
MIN_YEAR, MAX_YEAR = 1, 9999  # months outside stay in DEFAULT (Python datetimes end there)
DAEMON_INTERVAL_S = 24 * 3600.0  # the daemon's own best-effort ensure: at start, then daily
DAEMON_RETRY_S = 600.0  # … or this soon after a lock timeout or a database error

T = TypeVar("T")
Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of agent_logs; bounds are None for DEFAULT."""

    name: str
    is_default: bool
    lower: datetime | None
    upper: datetime | None

    def overlaps(self, lower: datetime, upper: datetime) -> bool:
        if self.lower is None or self.upper is None:
            return False
        return self.lower < upper and lower < self.upper


@dataclass(slots=True)
class EnsureResult:
    """What `ensure` did: partitions created, and rows moved out of DEFAULT into them."""

    created: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pruned:
    """A partition that prune dropped (or would drop), with its row count."""

    partition: Partition
    rows: int


@dataclass(slots=True)
class PruneResult:
    """What `prune` did, and what it left in DEFAULT."""

    cutoff: datetime
    dropped: list[Pruned] = field(default_factory=list)
    default_rows_older: int = 0

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.dropped)


# --- months ------------------------------------------------------------------------------


def add_months(month: datetime, n: int) -> datetime:
    """The first instant (UTC) of the month n months after `month`'s."""
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_{month.year:04d}_{month.month:02d}"


def bound_literal(month: datetime) -> str:
    """A UTC month start as PostgreSQL reads it whatever the session time zone."""
    return f"{month.year:04d}-{month.month:02d}-01 00:00:00+00"


def _upper(month: datetime) -> str:
    if month.year == MAX_YEAR and month.month == 12:
        return f"{MAX_YEAR + 1}-01-01 00:00:00+00"
    return bound_literal(add_months(month, 1))


# --- reading -----------------------------------------------------------------------------


def list_partitions(conn: Conn) -> list[Partition]:
    """Every partition of agent_logs, DEFAULT first, then by lower bound."""
    rows = conn.execute(db.SELECT_PARTITIONS).fetchall()
    return [Partition(str(name), bool(dflt), lower, upper) for name, dflt, lower, upper in rows]


def default_partition(parts: list[Partition]) -> str | None:
    return next((p.name for p in parts if p.is_default), None)


def current_month(conn: Conn) -> datetime:
    """The current UTC month by the database's clock (the same for every host)."""
    row = conn.execute(db.SELECT_MONTH_START).fetchone()
    assert row is not None
    start: datetime = row[0]
    return start.astimezone(UTC)


# --- creating ----------------------------------------------------------------------------


def ensure(
    conn: Conn,
    *,
    ahead_months: int = AHEAD_MONTHS,
    split_default: bool = False,
    attempts: int = 1,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> EnsureResult:
    """Create the partitions of the current month and `ahead_months` after it that are missing.

    With `split_default`, also one for every month that has rows in DEFAULT (so that prune can
    drop them later). Raises PartitionBusyError when agent_logs stays locked through `attempts`
    tries, PartitionPermissionError when this role does not own agent_logs.
    """
    conn.rollback()  # start clean: the connection may come from an idle sink
    start = current_month(conn)
    months = [add_months(start, n) for n in range(ahead_months + 1)]
    default = default_partition(list_partitions(conn))
    if split_default and default is not None:
        query = db.SELECT_DEFAULT_MONTHS.format(default=sql.Identifier(default))
        months += [m.astimezone(UTC) for (m,) in conn.execute(query).fetchall()]
    conn.rollback()
    result = EnsureResult()
    for month in sorted(set(months)):
        if not MIN_YEAR <= month.year <= MAX_YEAR:
            continue
        moved = _retry(partial(_ensure_month, conn, month, lock_timeout_ms), attempts)
        if moved is not None:
            result.created.append(partition_name(month))
            if moved:
                result.moved[partition_name(month)] = moved
    return result


def _ensure_month(conn: Conn, month: datetime, lock_timeout_ms: int) -> int | None:
    """Create one month's partition. None if it exists, else the rows moved out of DEFAULT."""
    lower, upper = bound_literal(month), _upper(month)
    name = partition_name(month)
    last = month.year == MAX_YEAR and month.month == 12
    end = datetime.max.replace(tzinfo=UTC) if last else add_months(month, 1)
    with db.transaction(conn) as cur:
        _lock_maintenance(cur, lock_timeout_ms)
        parts = list_partitions(conn)
        if any(p.name == name or p.overlaps(month, end) for p in parts):
            return None
        create = db.CREATE_MONTH_PARTITION.format(
            partition=sql.Identifier(name), lower=sql.Literal(lower), upper=sql.Literal(upper)
        )
        try:
            with conn.transaction():  # a savepoint: a refusal leaves the transaction usable
                cur.execute(create)
        except pgerr.CheckViolation:
            pass  # DEFAULT holds rows of this month: move them below
        else:
            return 0
        default = default_partition(parts)
        if default is None:
            raise AssertionError(
                "a partition was refused for DEFAULT's rows, but there is no DEFAULT"
            )
        return _create_moving_default_rows(cur, create, default, lower, upper)


def _create_moving_default_rows(
    cur: psycopg.Cursor[Any], create: sql.Composed, default: str, lower: str, upper: str
) -> int:
    cur.execute(db.LOCK_AGENT_LOGS)
    columns = sql.SQL(", ").join(
        sql.Identifier(str(r[0])) for r in cur.execute(db.SELECT_AGENT_LOGS_COLUMNS).fetchall()
    )
    bounds = {
        "default": sql.Identifier(default),
        "lower": sql.Literal(lower),
        "upper": sql.Literal(upper),
    }
    cur.execute(db.STASH_DEFAULT_ROWS.format(columns=columns, **bounds))
    cur.execute(db.DELETE_DEFAULT_ROWS.format(**bounds))
    moved = cur.rowcount
    cur.execute(create)
    cur.execute(db.RESTORE_MOVED_ROWS.format(columns=columns))
    return moved


# --- dropping ----------------------------------------------------------------------------


def prune(
    conn: Conn,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    attempts: int = 1,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    on_drop: Callable[[Pruned], None] | None = None,
) -> PruneResult:
    """Drop every monthly partition whose upper bound is at or before now - older_than.

    Whole partitions only: a month that is partly inside the cutoff is kept, and DEFAULT is
    never touched (its rows older than the cutoff are counted in `default_rows_older`).
    """
    conn.rollback()
    row = conn.execute(db.SELECT_NOW).fetchone()
    assert row is not None
    cutoff: datetime = (row[0] - older_than).astimezone(UTC)
    parts = list_partitions(conn)
    conn.rollback()
    result = PruneResult(cutoff)
    for part in parts:
        if part.is_default or part.upper is None or part.upper > cutoff:
            continue
        if dry_run:
            rows = _count(conn, part.name)
        else:
            rows = _retry(partial(_drop, conn, part.name, lock_timeout_ms), attempts)
        item = Pruned(part, rows)
        result.dropped.append(item)
        if on_drop is not None:
            on_drop(item)
    default = default_partition(parts)
    if default is not None:
        with db.transaction(conn) as cur:
            query = db.COUNT_ROWS_BEFORE.format(partition=sql.Identifier(default))
            counted = cur.execute(query, (cutoff,)).fetchone()
        result.default_rows_older = _int(counted)
    return result


def _count(conn: Conn, name: str) -> int:
    with db.transaction(conn) as cur:
        row = cur.execute(db.COUNT_PARTITION_ROWS.format(partition=sql.Identifier(name))).fetchone()
    return _int(row)


def _drop(conn: Conn, name: str, lock_timeout_ms: int) -> int:
    """Count and drop one partition in one transaction, agent_logs locked first (no deadlock
    with a query that locks the parent, then the partition)."""
    with db.transaction(conn) as cur:
        _lock_maintenance(cur, lock_timeout_ms)
        cur.execute(db.LOCK_AGENT_LOGS)
        row = cur.execute(db.COUNT_PARTITION_ROWS.format(partition=sql.Identifier(name))).fetchone()
        cur.execute(db.DROP_PARTITION.format(partition=sql.Identifier(name)))
    return _int(row)


def _int(row: tuple[object, ...] | None) -> int:
    return int(cast("int", row[0])) if row else 0


# --- locks and retries -------------------------------------------------------------------


def _lock_maintenance(cur: psycopg.Cursor[Any], lock_timeout_ms: int) -> None:
    cur.execute(db.SET_LOCAL_LOCK_TIMEOUT, (f"{lock_timeout_ms}ms",))
    cur.execute(db.XACT_LOCK, (MAINTENANCE_LOCK_KEY,))


def _retry(step: Callable[[], T], attempts: int) -> T:
    """Run one locked step; a lock timeout is tried again, a permission error is explained."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except pgerr.LockNotAvailable as exc:
            if attempt >= attempts:
                raise PartitionBusyError(
                    f"agent_logs stayed locked by other sessions ({exc.diag.message_primary}): "
                    "try again later (pg_stat_activity shows which queries hold it)"
                ) from exc
            time.sleep(MAINTAIN_RETRY_S * attempt)
        except pgerr.InsufficientPrivilege as exc:
            raise PartitionPermissionError(
                f"cannot create or drop agent_logs partitions ({exc.diag.message_primary}): run "
                "`session-db maintain` / `session-db prune` as the role that owns the schema "
                "(the one that runs `session-db migrate`)"
            ) from exc
    raise AssertionError("unreachable")  # attempts >= 1


# --- the daemon's best effort ------------------------------------------------------------


def maintain_in_daemon(connection: Callable[[], Conn]) -> float:
    """Create partitions ahead if this role may; never raises. Returns seconds until the next try.

    The daemon's role may only write rows (the owner role creates partitions through `session-db
    migrate` / `maintain`): then this logs `partitions_not_owner` once and stops trying for this
    run (math.inf). A lock timeout or a database error is logged and tried again later.
    """
    try:
        result = ensure(connection())
    except PartitionPermissionError as exc:
        log.warning(
            "partitions_not_owner", error=str(exc), hint="run `session-db maintain` from a timer"
        )
        return math.inf
    except PartitionBusyError as exc:
        log.warning("partitions_lock_timeout", error=str(exc), retry_s=DAEMON_RETRY_S)
        return DAEMON_RETRY_S
    except psycopg.Error as exc:
        log.warning("partitions_failed", error=str(exc).strip(), retry_s=DAEMON_RETRY_S)
        return DAEMON_RETRY_S
    if result.created:
        log.info("partitions_created", partitions=result.created, moved_from_default=result.moved)
    return DAEMON_INTERVAL_S
