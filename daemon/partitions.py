"""Monthly partitions of agent_logs and messages: one per UTC month, created ahead, dropped whole.

Both tables (TABLES) are partitioned by RANGE (occurred_at) (alembic revisions 0005 and 0008b):
a partition `<table>_YYYY_MM` per UTC calendar month and `<table>_default` for rows whose month
has no partition, so a late or clock-skewed event, or a transcript entry of a month before the
archive's first partition (backfill), is always stored; a messages row without a timestamp
(occurred_at NULL) lands there too. The same code serves both tables: partitions are created
ahead (the current month and AHEAD_MONTHS after it) by `session-db migrate`, by `session-db
maintain` (a timer), and best-effort by the daemon once a day; `prune` drops whole months of
both. Creating or dropping a partition needs the owner of the table and a brief ACCESS
EXCLUSIVE lock on its parent; every such transaction
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
    1000  # longest a partition DDL waits for its lock on the table (ingest waits behind it)
)
MAINTAIN_ATTEMPTS = 5  # `maintain`/`prune`: tries per step when the lock is not granted in time
MAINTAIN_RETRY_S = 2.0  # pause between those tries
MAINTENANCE_LOCK_KEY = 0x5E55_10DB_0002  # advisory lock: one partition maintainer at a time
MIN_YEAR, MAX_YEAR = 1, 9999  # months outside stay in DEFAULT (Python datetimes end there)
DAEMON_INTERVAL_S = 24 * 3600.0  # the daemon's own best-effort ensure: at start, then daily
DAEMON_RETRY_S = 600.0  # … or this soon after a lock timeout or a database error

T = TypeVar("T")
Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    """A table partitioned by RANGE (occurred_at), one partition per UTC month."""

    name: str

    @property
    def default_partition(self) -> str:
        return f"{self.name}_default"

    def partition_name(self, month: datetime) -> str:
        return f"{self.name}_{month.year:04d}_{month.month:02d}"


AGENT_LOGS = PartitionedTable("agent_logs")
MESSAGES = PartitionedTable("messages")
TABLES = (AGENT_LOGS, MESSAGES)  # maintained, and pruned, in this order


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of a partitioned table; bounds are None for DEFAULT."""

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
    """What `ensure` did: partitions created (with their table), and rows moved out of DEFAULT
    into them."""

    created: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)
    table_of: dict[str, PartitionedTable] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pruned:
    """A partition that prune dropped (or would drop), with its row count."""

    partition: Partition
    rows: int
    table: PartitionedTable


@dataclass(slots=True)
class PruneResult:
    """What `prune` did, and what it left in each table's DEFAULT partition."""

    cutoff: datetime
    dropped: list[Pruned] = field(default_factory=list)
    older_in_default: dict[PartitionedTable, int] = field(default_factory=dict)
    undated_in_default: dict[PartitionedTable, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.dropped)

    def rows_of(self, table: PartitionedTable) -> int:
        return sum(p.rows for p in self.dropped if p.table == table)

    def dropped_of(self, table: PartitionedTable) -> list[Pruned]:
        return [p for p in self.dropped if p.table == table]


# --- months ------------------------------------------------------------------------------


def add_months(month: datetime, n: int) -> datetime:
    """The first instant (UTC) of the month n months after `month`'s."""
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime, table: PartitionedTable = AGENT_LOGS) -> str:
    return table.partition_name(month)


def bound_literal(month: datetime) -> str:
    """A UTC month start as PostgreSQL reads it whatever the session time zone."""
    return f"{month.year:04d}-{month.month:02d}-01 00:00:00+00"


def _upper(month: datetime) -> str:
    if month.year == MAX_YEAR and month.month == 12:
        return f"{MAX_YEAR + 1}-01-01 00:00:00+00"
    return bound_literal(add_months(month, 1))


# --- reading -----------------------------------------------------------------------------


def list_partitions(conn: Conn, table: PartitionedTable = AGENT_LOGS) -> list[Partition]:
    """Every partition of `table`, DEFAULT first, then by lower bound."""
    rows = conn.execute(db.SELECT_PARTITIONS, (table.name,)).fetchall()
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
    tables: tuple[PartitionedTable, ...] = TABLES,
) -> EnsureResult:
    """Create, in every table, the partitions of the current month and `ahead_months` after it
    that are missing.

    With `split_default`, also one for every month that has rows in a DEFAULT partition (so that
    prune can drop them later). Raises PartitionBusyError when a table stays locked through
    `attempts` tries, PartitionPermissionError when this role does not own it.
    """
    conn.rollback()  # start clean: the connection may come from an idle sink
    start = current_month(conn)
    ahead = [add_months(start, n) for n in range(ahead_months + 1)]
    result = EnsureResult()
    for table in tables:
        months = list(ahead)
        default = default_partition(list_partitions(conn, table))
        if split_default and default is not None:
            query = db.SELECT_DEFAULT_MONTHS.format(default=sql.Identifier(default))
            months += [m.astimezone(UTC) for (m,) in conn.execute(query).fetchall()]
        conn.rollback()
        for month in sorted(set(months)):
            if not MIN_YEAR <= month.year <= MAX_YEAR:
                continue
            step = partial(_ensure_month, conn, table, month, lock_timeout_ms)
            moved = _retry(step, attempts, table)
            if moved is not None:
                result.created.append(table.partition_name(month))
                result.table_of[table.partition_name(month)] = table
                if moved:
                    result.moved[table.partition_name(month)] = moved
    return result


def _ensure_month(
    conn: Conn, table: PartitionedTable, month: datetime, lock_timeout_ms: int
) -> int | None:
    """Create one month's partition. None if it exists, else the rows moved out of DEFAULT."""
    lower, upper = bound_literal(month), _upper(month)
    name = table.partition_name(month)
    last = month.year == MAX_YEAR and month.month == 12
    end = datetime.max.replace(tzinfo=UTC) if last else add_months(month, 1)
    with db.transaction(conn) as cur:
        _lock_maintenance(cur, lock_timeout_ms)
        parts = list_partitions(conn, table)
        if any(p.name == name or p.overlaps(month, end) for p in parts):
            return None
        create = db.CREATE_MONTH_PARTITION.format(
            table=sql.Identifier(table.name),
            partition=sql.Identifier(name),
            lower=sql.Literal(lower),
            upper=sql.Literal(upper),
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
        return _create_moving_default_rows(cur, table, create, default, lower=lower, upper=upper)


def _create_moving_default_rows(
    cur: psycopg.Cursor[Any],
    table: PartitionedTable,
    create: sql.Composed,
    default: str,
    *,
    lower: str,
    upper: str,
) -> int:
    parent = sql.Identifier(table.name)
    cur.execute(db.LOCK_PARTITIONED.format(table=parent))
    columns = sql.SQL(", ").join(
        sql.Identifier(str(r[0]))
        for r in cur.execute(db.SELECT_PARTITIONED_COLUMNS, (table.name,)).fetchall()
    )
    moving = sql.Identifier(f"{table.name}_moving")
    bounds = {
        "default": sql.Identifier(default),
        "lower": sql.Literal(lower),
        "upper": sql.Literal(upper),
    }
    cur.execute(db.STASH_DEFAULT_ROWS.format(columns=columns, moving=moving, **bounds))
    cur.execute(db.DELETE_DEFAULT_ROWS.format(**bounds))
    moved = cur.rowcount
    cur.execute(create)
    cur.execute(db.RESTORE_MOVED_ROWS.format(table=parent, columns=columns, moving=moving))
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
    tables: tuple[PartitionedTable, ...] = TABLES,
) -> PruneResult:
    """Drop, in every table, each monthly partition whose upper bound is at or before
    now - older_than.

    Whole partitions only: a month that is partly inside the cutoff is kept, and DEFAULT is
    never touched (its rows older than the cutoff are counted in `older_in_default`, its rows
    without a timestamp in `undated_in_default`).
    """
    conn.rollback()
    row = conn.execute(db.SELECT_NOW).fetchone()
    assert row is not None
    cutoff: datetime = (row[0] - older_than).astimezone(UTC)
    conn.rollback()
    result = PruneResult(cutoff)
    for table in tables:
        parts = list_partitions(conn, table)
        conn.rollback()
        for part in parts:
            if part.is_default or part.upper is None or part.upper > cutoff:
                continue
            if dry_run:
                rows = _count(conn, part.name)
            else:
                step = partial(_drop, conn, table, part.name, lock_timeout_ms)
                rows = _retry(step, attempts, table)
            item = Pruned(part, rows, table)
            result.dropped.append(item)
            if on_drop is not None:
                on_drop(item)
        default = default_partition(parts)
        if default is not None:
            with db.transaction(conn) as cur:
                name = sql.Identifier(default)
                older = cur.execute(db.COUNT_ROWS_BEFORE.format(partition=name), (cutoff,))
                result.older_in_default[table] = _int(older.fetchone())
                undated = cur.execute(db.COUNT_UNDATED_ROWS.format(partition=name))
                result.undated_in_default[table] = _int(undated.fetchone())
    return result


def _count(conn: Conn, name: str) -> int:
    with db.transaction(conn) as cur:
        row = cur.execute(db.COUNT_PARTITION_ROWS.format(partition=sql.Identifier(name))).fetchone()
    return _int(row)


def _drop(conn: Conn, table: PartitionedTable, name: str, lock_timeout_ms: int) -> int:
    """Count and drop one partition in one transaction, the parent locked first (no deadlock
    with a query that locks the parent, then the partition)."""
    with db.transaction(conn) as cur:
        _lock_maintenance(cur, lock_timeout_ms)
        cur.execute(db.LOCK_PARTITIONED.format(table=sql.Identifier(table.name)))
        row = cur.execute(db.COUNT_PARTITION_ROWS.format(partition=sql.Identifier(name))).fetchone()
        cur.execute(db.DROP_PARTITION.format(partition=sql.Identifier(name)))
    return _int(row)


def _int(row: tuple[object, ...] | None) -> int:
    return int(cast("int", row[0])) if row else 0


# --- locks and retries -------------------------------------------------------------------


def _lock_maintenance(cur: psycopg.Cursor[Any], lock_timeout_ms: int) -> None:
    cur.execute(db.SET_LOCAL_LOCK_TIMEOUT, (f"{lock_timeout_ms}ms",))
    cur.execute(db.XACT_LOCK, (MAINTENANCE_LOCK_KEY,))


def _retry(step: Callable[[], T], attempts: int, table: PartitionedTable) -> T:
    """Run one locked step; a lock timeout is tried again, a permission error is explained."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except pgerr.LockNotAvailable as exc:
            if attempt >= attempts:
                raise PartitionBusyError(
                    f"{table.name} stayed locked by other sessions ({exc.diag.message_primary}): "
                    "try again later (pg_stat_activity shows which queries hold it)"
                ) from exc
            time.sleep(MAINTAIN_RETRY_S * attempt)
        except pgerr.InsufficientPrivilege as exc:
            raise PartitionPermissionError(
                f"cannot create or drop {table.name} partitions ({exc.diag.message_primary}): run "
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
