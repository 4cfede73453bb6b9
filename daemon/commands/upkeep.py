"""`migrate`, `maintain` and `prune`: the schema and the monthly partitions of agent_logs and messages."""

from __future__ import annotations

import argparse
from datetime import timedelta

import structlog

from daemon import config
from daemon.database import database, partition_connection
from daemon.errors import EX_OK, ConfigError

log = structlog.get_logger("session_db.cli")
PRUNE_MIN_AGE_S = 86400  # `prune --older-than` below a day is a typo (m is minutes, not months)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mig = sub.add_parser(
        "migrate", help="upgrade the database schema (Alembic) to this version's head"
    )
    mig.add_argument("--revision", default="head", help="target revision (default: head)")
    mig.set_defaults(handler=cmd_migrate, logs_progress=True)
    mt = sub.add_parser(
        "maintain",
        help="create the monthly partitions of agent_logs and messages ahead (run by the owner role, from a timer)",
        description="Creates the partitions of agent_logs and messages for the current UTC month and the next "
        "ones (rows that already sit in agent_logs_default or messages_default for those months move in). "
        "Needs the role that owns "
        "the schema; waits at most a second for its lock each try, so ingest never queues behind it for "
        "long. Safe to run any time, from any host. systemd/session-db-maintain.timer runs it daily.",
    )
    mt.add_argument(
        "--ahead",
        type=int,
        default=None,
        metavar="MONTHS",
        help="months after the current one (default: 3)",
    )
    mt.add_argument(
        "--split-default",
        action="store_true",
        help="also give every month that has rows in agent_logs_default or messages_default its own partition "
        "(so prune can drop them)",
    )
    mt.set_defaults(handler=cmd_maintain, logs_progress=True)
    pn = sub.add_parser(
        "prune",
        help="drop the agent_logs and messages partitions older than a duration, and say what was removed",
        description="Drops every monthly partition of agent_logs (hook events) and messages (the conversation "
        "archive) whose whole month ended more than DURATION ago (a month partly inside the cutoff is kept). "
        "token_usage, transcript_files, agents and sessions are not touched, so costs keep their history. "
        "agent_logs_default and messages_default are never dropped; rows in them older than the cutoff, and "
        "messages rows without a timestamp, are reported. "
        "Needs the role that owns the schema.",
    )
    pn.add_argument(
        "--older-than", required=True, metavar="DURATION", help="e.g. 180d or 26w (at least 1d)"
    )
    pn.add_argument(
        "--dry-run", action="store_true", help="show what would be dropped, drop nothing"
    )
    pn.set_defaults(handler=cmd_prune, logs_progress=True)


def cmd_migrate(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import migrations

    with database(settings) as url:
        before = _safe_revision(url, settings.connect_timeout_s)
        migrations.upgrade(url, args.revision, connect_timeout_s=settings.connect_timeout_s)
        after = migrations.current_revision(url, connect_timeout_s=settings.connect_timeout_s)
        log.info("migrated", before=before, after=after)
        if after == migrations.head_revision():
            from daemon.errors import PartitionBusyError

            try:
                _ensure_partitions(settings, url, None, split=False)
            except PartitionBusyError as exc:  # migrated all the same; the timer tries again
                log.warning(
                    "partitions_not_created", error=str(exc), hint="run `session-db maintain` later"
                )
    return EX_OK


def _ensure_partitions(settings: config.Settings, url: str, ahead: int | None, split: bool) -> None:
    from daemon import partitions

    with partition_connection(settings, url) as conn:
        result = partitions.ensure(
            conn,
            ahead_months=partitions.AHEAD_MONTHS if ahead is None else ahead,
            split_default=split,
            attempts=partitions.MAINTAIN_ATTEMPTS,
        )
    for name in result.created:
        moved = result.moved.get(name)
        print(
            f"created {name}"
            + (f" ({moved} rows moved in from {result.table_of[name].default_partition})" if moved else "")
        )
    log.info("partitions_ensured", created=len(result.created), moved=sum(result.moved.values()))


def cmd_maintain(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import migrations

    with database(settings) as url:
        migrations.check(url)
        _ensure_partitions(settings, url, args.ahead, args.split_default)
    return EX_OK


def cmd_prune(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import migrations, partitions
    from daemon.quarantine import parse_duration

    try:
        seconds = parse_duration(args.older_than)
    except ValueError as exc:
        raise ConfigError(f"prune --older-than: {exc}") from exc
    if seconds < PRUNE_MIN_AGE_S:
        raise ConfigError(
            f"prune --older-than {args.older_than}: give at least 1d (m means minutes; 180d is about 6 months)"
        )
    verb = "would drop" if args.dry_run else "dropped"

    def report(item: partitions.Pruned) -> None:
        p = item.partition
        assert p.lower is not None
        assert p.upper is not None
        print(
            f"{verb} {p.name}  {p.lower:%Y-%m-%d} .. {p.upper:%Y-%m-%d}  {item.rows} rows",
            flush=True,
        )

    with database(settings) as url:
        migrations.check(url)
        with partition_connection(settings, url) as conn:
            result = partitions.prune(
                conn,
                timedelta(seconds=seconds),
                dry_run=args.dry_run,
                attempts=partitions.MAINTAIN_ATTEMPTS,
                on_drop=report,
            )
    when = f"{result.cutoff:%Y-%m-%d %H:%M} UTC"
    for table in partitions.TABLES:
        print(f"prune: {verb} {len(result.dropped_of(table))} partitions, {result.rows_of(table)} rows of "
              f"{table.name} older than {when}")  # fmt: skip
        older = result.older_in_default.get(table, 0)
        if older:
            print(f"note: {older} rows older than the cutoff are in {table.default_partition} (their month "
                  "had no partition when they arrived) and were kept: `session-db maintain --split-default` "
                  "gives them monthly partitions, then prune again")  # fmt: skip
        undated = result.undated_in_default.get(table, 0)
        if undated:
            print(f"note: {undated} rows without a timestamp are in {table.default_partition}; prune "
                  "keeps them (their age is unknown)")  # fmt: skip
    print("prune: token_usage and transcript_files are kept")
    log.info("pruned", partitions=len(result.dropped), rows=result.rows,
             messages=result.rows_of(partitions.MESSAGES), dry_run=args.dry_run)  # fmt: skip
    return EX_OK


def _safe_revision(url: str, connect_timeout_s: int) -> str | None:
    from daemon import migrations

    try:
        return migrations.current_revision(url, connect_timeout_s=connect_timeout_s)
    except Exception:  # noqa: BLE001 - only for the log line; migrate reports real errors itself
        return None
