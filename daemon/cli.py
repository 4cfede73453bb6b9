"""The `session-db` command."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import structlog

from daemon import __version__, config
from daemon.errors import EX_OK, EX_SOFTWARE, ConfigError, SessionDbError

log = structlog.get_logger("session_db.cli")

DESCRIPTION = """\
session-db records every Claude Code hook event, workflow state file and (soon) transcript
token into PostgreSQL, so you can ask with psql what your agents did, what it cost and where
the time went.

Quick start:
  session-db run                 # daemon; a private PostgreSQL cluster if SESSION_DB_URL is unset
  session-db hooks install       # add our hook to ~/.claude/settings.json
  session-db psql                # look at agent_logs, agents, sessions

Settings come from environment variables (SESSION_DB_*), which override the TOML file
$SESSION_DB_CONFIG (default ~/.config/session-db/config.toml). `session-db config` shows them.
"""


ROLES_DESCRIPTION = """\
Prints SQL that creates three group roles (NOLOGIN) and grants them what they need; --apply runs
it on SESSION_DB_URL, connected as a superuser. Idempotent: applying it again changes nothing.

  owner    owns tables, views and partitions: runs `session-db migrate` (and `prices set`)
  writer   the daemons (run, ingest, backfill): reads everything, inserts and updates the
           tables it fills, creates temporary tables; never deletes, alters or drops
  analyst  SELECT on every table and view, nothing else

People and machines log in as members: CREATE ROLE alice LOGIN IN ROLE session_db_analyst.
An owner member also needs ALTER ROLE migrator SET role = 'session_db_owner', so that what it
creates belongs to the group. Order on a new database:
  1. session-db roles --apply      (superuser; the owner may now create in schema public)
  2. session-db migrate            (as an owner member)
  3. session-db roles --apply      (again: grants the writer the tables migrate created)
  4. session-db run                (as a writer member)
Repeat 2 and 3 on every upgrade. A database a superuser migrated before: step 1 hands its
tables to the owner role.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="session-db",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"session-db {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", help="run the daemon until SIGTERM/SIGINT (a second signal exits at once)"
    )
    ing = sub.add_parser("ingest", help="drain the spool and state files, then exit (tests, cron)")
    ing.add_argument(
        "--once", action="store_true", required=True, help="drain once and exit (required)"
    )
    mig = sub.add_parser(
        "migrate", help="upgrade the database schema (Alembic) to this version's head"
    )
    mig.add_argument("--revision", default="head", help="target revision (default: head)")
    mt = sub.add_parser(
        "maintain",
        help="create agent_logs' monthly partitions ahead (run by the owner role, from a timer)",
        description="Creates the partitions of agent_logs for the current UTC month and the next ones "
        "(rows that already sit in agent_logs_default for those months move in). Needs the role that owns "
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
        help="also give every month that has rows in agent_logs_default its own partition (so prune can drop them)",
    )
    pn = sub.add_parser(
        "prune",
        help="drop agent_logs partitions older than a duration, and say what was removed",
        description="Drops every monthly agent_logs partition whose whole month ended more than DURATION ago "
        "(a month partly inside the cutoff is kept). Hook and phase events only: token_usage, "
        "transcript_files, agents and sessions are not touched, so costs keep their history. "
        "agent_logs_default is never dropped; rows in it older than the cutoff are reported. "
        "Needs the role that owns the schema.",
    )
    pn.add_argument(
        "--older-than", required=True, metavar="DURATION", help="e.g. 180d or 26w (at least 1d)"
    )
    pn.add_argument(
        "--dry-run", action="store_true", help="show what would be dropped, drop nothing"
    )
    st = sub.add_parser(
        "status", help="spool backlog, quarantine, database and schema, last events per host"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser(
        "config", help="print the effective settings and where each came from (password masked)"
    )
    ps = sub.add_parser(
        "psql", help="open psql on the database (starts the embedded cluster if needed)"
    )
    ps.add_argument("psql_args", nargs=argparse.REMAINDER, help="extra arguments passed to psql")

    bf = sub.add_parser(
        "backfill",
        help="import existing Claude Code transcripts (token usage), idempotently",
        description="Read every *.jsonl transcript under DIR (default: the projects/ folder of each Claude "
        "config dir: $CLAUDE_CONFIG_DIR, ~/.claude, ~/.config/claude) into token_usage. Safe to run again: "
        "files are read from where the last run stopped, and responses are deduplicated by key.",
    )
    bf.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="folders to scan recursively")

    pr = sub.add_parser("prices", help="list the price table, or add an effective-dated price")
    psub = pr.add_subparsers(dest="prices_command", metavar="ACTION")
    psub.add_parser("list", help="every price row (default)")
    ps_check = psub.add_parser(
        "check",
        help="list models with no price or priced unlike Claude Code (exit 1 when any)",
        description="Every model seen in token_usage that has no price, or whose cost differs from "
        "Claude Code's own (its cost-state transcript lines) by more than 1e-6 USD, with the command "
        "that fixes it.",
    )
    ps_check.add_argument("--json", action="store_true", help="machine-readable output")
    ps_set = psub.add_parser(
        "set",
        help="add a price row for a model prefix from a date on (history before it keeps the old price)",
        description="Fields you leave out are copied from the prefix's latest row. USD per million tokens.",
    )
    ps_set.add_argument(
        "model_prefix", help="e.g. claude-sonnet-4-5 (prices that id, its dated and provider forms)"
    )
    for flag, col in (
        ("--input", "input_usd_per_mtok"),
        ("--output", "output_usd_per_mtok"),
        ("--cache-write-5m", "cache_write_5m_usd_per_mtok"),
        ("--cache-write-1h", "cache_write_1h_usd_per_mtok"),
        ("--cache-read", "cache_read_usd_per_mtok"),
        ("--long-context-input-multiplier", "long_context_input_multiplier"),
        ("--long-context-output-multiplier", "long_context_output_multiplier"),
        ("--fast-multiplier", "fast_multiplier"),
        ("--data-residency-multiplier", "data_residency_multiplier"),
        ("--web-search-per-1k", "web_search_usd_per_1k"),
    ):
        ps_set.add_argument(flag, dest=col, type=Decimal, metavar="N")
    ps_set.add_argument(
        "--long-context-threshold", dest="long_context_threshold_tokens", type=int, metavar="TOKENS"
    )
    ps_set.add_argument(
        "--effective-from",
        type=datetime.fromisoformat,
        metavar="ISO-TIME",
        help="default: now (UTC)",
    )
    ps_set.add_argument("--note", help="where the price comes from")

    qu = sub.add_parser(
        "quarantine",
        help="list, show, replay or purge spool files that could not become rows",
        description="Quarantined events live in <spool>/quarantine with a <name>.reason.json. Replay validates "
        "them again and moves the ones that parse back into new/ for the daemon (or `ingest --once`).",
    )
    qsub = qu.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    ql = qsub.add_parser("list", help="every quarantined event with its reason")
    ql.add_argument("--json", action="store_true", help="machine-readable output")
    qs = qsub.add_parser("show", help="the reason record and the start of the file")
    qs.add_argument("name")
    qr = qsub.add_parser(
        "replay", help="move events back into new/ after a fix (they are validated first)"
    )
    qr.add_argument("names", nargs="*", metavar="NAME")
    qr.add_argument("--all", action="store_true", help="every quarantined event")
    qp = qsub.add_parser(
        "purge", help="delete quarantined events older than a duration (never automatic)"
    )
    qp.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 2w")
    qp.add_argument("--dry-run", action="store_true", help="list what would be deleted")

    rl = sub.add_parser(
        "roles",
        help="print (or --apply) SQL for an owner, a writer and a read-only analyst role",
        description=ROLES_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rl.add_argument(
        "--apply", action="store_true", help="run the SQL on SESSION_DB_URL (as a superuser)"
    )
    for flag, default in (
        ("--owner", "session_db_owner"),
        ("--writer", "session_db_writer"),
        ("--analyst", "session_db_analyst"),
    ):
        rl.add_argument(flag, default=default, metavar="NAME", help=f"(default: {default})")

    doc = sub.add_parser("doctor", help="find why hooks are installed but nothing arrives")
    doc.add_argument(
        "--project", metavar="DIR", type=Path, help="also check DIR/.claude/settings*.json"
    )

    svc = sub.add_parser("service", help="install the systemd unit for this installation")
    ssub = svc.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    si = ssub.add_parser(
        "install",
        help="write the unit (user unit by default) and print the systemctl commands",
        description="Writes the unit with the absolute path of this session-db. SESSION_DB_URL, if set, goes "
        "into a 0600 environment file read by the unit, never into the unit itself.",
    )
    kind = si.add_mutually_exclusive_group()
    kind.add_argument(
        "--user", action="store_true", help="~/.config/systemd/user/session-db.service (default)"
    )
    kind.add_argument(
        "--system",
        action="store_true",
        help="/etc/systemd/system/session-db@.service, run as USER (root only)",
    )
    si.add_argument("--as-user", metavar="USER", help="with --system: the user the service runs as")
    si.add_argument("--enable", action="store_true", help="also run the systemctl commands")
    si.add_argument("--dry-run", action="store_true", help="print the unit, write nothing")

    _add_report_parsers(sub)
    tp = sub.add_parser(
        "top",
        help="live view: running Claude sessions, subagents, tools, cost, burn rate, events/s, backlog",
        description="Refreshes every second; q or Ctrl-C quits. When stdout is not a terminal it prints "
        "plain lines, one block per refresh.",
    )
    tp.add_argument("--once", action="store_true", help="print one snapshot as plain lines and exit")
    pj = sub.add_parser("projects", help="count several directories (on any host) as one project")
    pjsub = pj.add_subparsers(dest="projects_command", metavar="ACTION")
    pjsub.add_parser("list", help="every alias (default)")
    pja = pjsub.add_parser("alias", help="count the directory PATH as project NAME")
    pja.add_argument("path", metavar="PATH", help="absolute directory, as Claude Code records cwd")
    pja.add_argument("name", metavar="NAME")
    pjr = pjsub.add_parser("rm", help="remove the alias of PATH")
    pjr.add_argument("path", metavar="PATH")
    bu = sub.add_parser("budget", help="spending limits per day, week or month (the daemon warns once per period)")
    busub = bu.add_subparsers(dest="budget_command", metavar="ACTION")
    busub.add_parser("list", help="every budget with its spend in the current period (default)")
    for action, text in (("set", "add or change a budget"), ("rm", "remove a budget")):
        b = busub.add_parser(action, help=text)
        period = b.add_mutually_exclusive_group(required=True)
        for name in ("daily", "weekly", "monthly"):
            if action == "set":
                period.add_argument(f"--{name}", metavar="USD", help=f"{name} limit")
            else:
                period.add_argument(f"--{name}", action="store_true", help=f"the {name} budget")
        b.add_argument("--project", help="only this project (default: all usage)")
        if action == "set":
            b.add_argument("--tz", help="zone where days, weeks and months begin (default: this machine's)")

    hooks = sub.add_parser("hooks", help="install or remove our Claude Code hook")
    hsub = hooks.add_subparsers(dest="hooks_command", required=True, metavar="ACTION")
    for name, text in (
        ("install", "add one handler per Claude Code event"),
        ("uninstall", "remove exactly our handlers"),
    ):
        h = hsub.add_parser(name, help=text)
        h.add_argument(
            "--project",
            metavar="DIR",
            type=Path,
            help="write DIR/.claude/settings.local.json (personal, not committed) instead of ~/.claude/settings.json",
        )
        h.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    return p


def _add_report_parsers(sub: Any) -> None:
    """`report` (issue 14): one sub-command per report kind, sharing the filter options."""
    from daemon.reports import KINDS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="first day (in --tz)")
    common.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="last day, inclusive")
    common.add_argument("--tz", help="IANA time zone for days and times (default: this machine's)")
    common.add_argument("--project", help="only this project (alias name or directory)")
    common.add_argument("--host", help="only usage read on this host")
    common.add_argument("--breakdown", action="store_true", help="one row per model within each group")
    fmt = common.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the documented JSON document (docs/reports.md)")
    fmt.add_argument("--csv", action="store_true", help="comma-separated rows with a header line")
    rp = sub.add_parser(
        "report",
        help="cost and tokens per day, week, month, session, 5-hour block, project or model",
        description="Reads the cost views (usage_attribution, usage_blocks, budget_status): the numbers "
        "equal what psql shows. Tables fit the terminal and end with totals and budgets.",
    )
    rsub = rp.add_subparsers(dest="report_kind", required=True, metavar="REPORT")
    for kind in KINDS:
        k = rsub.add_parser(kind, parents=[common], help=f"the {kind} report")
        if kind == "blocks":
            k.add_argument("--active", action="store_true", help="only the active block, with its burn rate")
        if kind == "projects":
            k.add_argument("--branches", action="store_true", help="one row per git branch")
    hp = rsub.add_parser(
        "html",
        parents=[common],
        help="one self-contained HTML page of charts (works offline)",
        description="Cost per day by model, usage blocks, tool p50/p95 durations, the most expensive sessions "
        "and cost by project and branch, with plotly.js embedded (needs the plotly package: session-db[charts]).",
    )
    hp.add_argument("file", type=Path, metavar="FILE", help="where to write the page")


def _date(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from daemon import dsn

    try:
        settings = config.load()
        dsn.check(settings.url)
    except SessionDbError as exc:
        print(f"session-db: {exc}", file=sys.stderr)
        return exc.exit_code
    from daemon import log as logsetup

    logsetup.configure(settings.log_format, secrets=dsn.secrets(settings.url))
    try:
        handler = COMMANDS[args.command]
        return handler(settings, args)
    except SessionDbError as exc:
        log.error("fatal", error=str(exc), exit_code=exc.exit_code)  # noqa: TRY400 - the message says it all
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("crashed")  # a bug or a dead side task: exit non-zero so systemd restarts us
        return EX_SOFTWARE


# --- commands ---------------------------------------------------------------------------


def cmd_run(settings: config.Settings, _args: argparse.Namespace) -> int:
    from daemon.service import Service

    log.info(
        "starting",
        version=__version__,
        spool=str(settings.spool),
        host=settings.host,
        embedded=settings.embedded,
    )
    return Service(settings).run()


def cmd_ingest(settings: config.Settings, _args: argparse.Namespace) -> int:
    from daemon.service import Service

    stats = Service(settings).run_once()
    log.info(
        "ingest_done",
        files=stats.files,
        rows=stats.inserted,
        duplicates=stats.duplicates,
        quarantined=stats.quarantined,
    )
    return EX_OK


@contextmanager
def database(settings: config.Settings) -> Iterator[str]:
    """The database URL; with no SESSION_DB_URL, the embedded cluster, started for the call if needed."""
    if settings.url:
        yield settings.url
        return
    from daemon.cluster import EmbeddedCluster, find_binaries

    cluster = EmbeddedCluster(settings.state_dir, find_binaries(settings.pg_bin))
    started = cluster.ensure_started()
    try:
        yield cluster.url()
    finally:
        if started:
            cluster.stop()


def cmd_migrate(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import migrations

    with database(settings) as url:
        before = _safe_revision(url)
        migrations.upgrade(url, args.revision)
        after = migrations.current_revision(url)
        log.info("migrated", before=before, after=after)
        if after == migrations.head_revision():
            from daemon.partitions import PartitionBusyError

            try:
                _ensure_partitions(settings, url, None, split=False)
            except PartitionBusyError as exc:  # migrated all the same; the timer tries again
                log.warning(
                    "partitions_not_created", error=str(exc), hint="run `session-db maintain` later"
                )
    return EX_OK


def _partition_connection(settings: config.Settings, url: str) -> Any:
    """A connection for partition DDL: no statement timeout (moving rows may take a while)."""
    from daemon import db

    return db.connect(
        url,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_ms=0,
        lock_timeout_ms=config.LOCK_TIMEOUT_MS,
    )


def _ensure_partitions(settings: config.Settings, url: str, ahead: int | None, split: bool) -> None:
    from daemon import partitions

    with _partition_connection(settings, url) as conn:
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
            + (f" ({moved} rows moved in from agent_logs_default)" if moved else "")
        )
    log.info("partitions_ensured", created=len(result.created), moved=sum(result.moved.values()))


def cmd_maintain(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import migrations

    with database(settings) as url:
        migrations.check(url)
        _ensure_partitions(settings, url, args.ahead, args.split_default)
    return EX_OK


PRUNE_MIN_AGE_S = 86400  # `prune --older-than` below a day is a typo (m is minutes, not months)


def cmd_prune(settings: config.Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

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
        with _partition_connection(settings, url) as conn:
            result = partitions.prune(
                conn,
                timedelta(seconds=seconds),
                dry_run=args.dry_run,
                attempts=partitions.MAINTAIN_ATTEMPTS,
                on_drop=report,
            )
    print(f"prune: {verb} {len(result.dropped)} partitions, {result.rows} rows of agent_logs older than "
          f"{result.cutoff:%Y-%m-%d %H:%M} UTC (token_usage and transcript_files are kept)")  # fmt: skip
    if result.default_rows_older:
        print(f"note: {result.default_rows_older} rows older than the cutoff are in {partitions.DEFAULT_PARTITION} "
              "(their month had no partition when they arrived) and were kept: `session-db maintain "
              "--split-default` gives them monthly partitions, then prune again")  # fmt: skip
    log.info("pruned", partitions=len(result.dropped), rows=result.rows, dry_run=args.dry_run)
    return EX_OK


def _safe_revision(url: str) -> str | None:
    from daemon import migrations

    try:
        return migrations.current_revision(url)
    except Exception:  # noqa: BLE001 - only for the log line; migrate reports real errors itself
        return None


def cmd_config(settings: config.Settings, _args: argparse.Namespace) -> int:
    rows = config.describe(settings)
    width = max(len(k) for k, _, _ in rows)
    print(f"# config file: {settings.config_file}")
    for key, value, source in rows:
        print(f"{key:<{width}}  {value}    ({source})")
    return EX_OK


def cmd_status(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon.status import collect, render

    report = collect(settings)
    if args.json:
        sys.stdout.write(
            orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"
        )
    else:
        sys.stdout.write(render(report))
    return EX_OK if report["database"]["reachable"] else 1


def cmd_psql(settings: config.Settings, args: argparse.Namespace) -> int:
    psql = shutil.which("psql")
    if psql is None:
        raise ConfigError(
            "psql not found on PATH: install the PostgreSQL client (apt-get install postgresql-client)"
        )
    extra = [a for a in args.psql_args if a != "--"]
    with database(settings) as url:
        # The URL goes through the environment-free argument `-d`, which carries no password for the
        # embedded cluster; for an external database a password belongs in ~/.pgpass or PGPASSWORD.
        from daemon.dsn import without_password

        env = dict(os.environ)
        target, password = without_password(url)
        if password:
            env["PGPASSWORD"] = password
        return subprocess.call([psql, "-d", target, *extra], env=env)


def cmd_hooks(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import installer
    from daemon.resources import hook_script

    home = Path(os.environ.get("HOME") or Path.home())
    project = args.project.resolve() if args.project else None
    target = installer.settings_path(home, project)
    if args.hooks_command == "install":
        if args.dry_run:
            hook = installer.installed_hook_path(settings.data_dir)
        else:
            hook = installer.install_hook_script(hook_script(), settings.data_dir)
        other = installer.settings_path(home, None) if project else None
        events = installer.detect_claude_events(installer.claude_version())
        plan = installer.plan_install(target, hook, settings.spool.resolve(), events, other)
    else:
        plan = installer.plan_uninstall(target)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.dry_run:
        sys.stdout.write(installer.unified_diff(plan) or f"{target}: no change\n")
        return EX_OK
    backup = installer.apply(plan)
    verb = "installed into" if args.hooks_command == "install" else "removed from"
    if plan.changed:
        print(f"session-db hook {verb} {target}" + (f" (backup: {backup})" if backup else ""))
    else:
        print(f"{target}: already up to date")
    return EX_OK


def default_projects_dirs(env: dict[str, str] | None = None) -> list[Path]:
    """Each Claude config dir's projects/ folder that exists."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or Path.home())
    bases = [Path(p).expanduser() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    bases += [home / ".claude", home / ".config" / "claude"]
    seen: list[Path] = []
    for base in bases:
        projects = base / "projects"
        if projects.is_dir() and projects not in seen:
            seen.append(projects)
    return seen


@contextmanager
def migrated_sink(settings: config.Settings) -> Iterator[Any]:
    """A PostgresSink on a database at this version's schema (the embedded one is migrated)."""
    from daemon import migrations
    from daemon.sink import PostgresSink

    with database(settings) as url:
        if settings.embedded:
            migrations.upgrade(url)
        migrations.check(url)
        sink = PostgresSink.for_settings(settings, url)
        try:
            yield sink
        finally:
            sink.close()


class Progress:
    """A progress bar on a TTY, a line every few seconds otherwise (stderr)."""

    INTERVAL_S = 5.0

    def __init__(self, total_files: int, total_bytes: int) -> None:
        self.total_files = total_files
        self.total_bytes = max(total_bytes, 1)
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, stats: Any) -> None:
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else self.INTERVAL_S):
            return
        self._last = now
        self._draw(stats, now)

    def _draw(self, stats: Any, now: float) -> None:
        frac = min(1.0, stats.bytes / self.total_bytes)
        mb = stats.bytes / 1e6
        rate = mb / max(now - self.started, 1e-6)
        text = (
            f"{frac * 100:5.1f}% {stats.files}/{self.total_files} files "
            f"{mb:.1f}/{self.total_bytes / 1e6:.1f} MB {rate:.1f} MB/s {stats.responses} responses"
        )
        if self.tty:
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r[{bar:<30}] {text}")
        else:
            sys.stderr.write(f"backfill: {text}\n")
        sys.stderr.flush()

    def finish(self, stats: Any) -> None:
        self._draw(stats, time.monotonic())
        if self.tty:
            sys.stderr.write("\n")


def cmd_backfill(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import db
    from daemon.transcripts import TranscriptReader

    dirs = [d.expanduser().resolve() for d in args.dirs] or default_projects_dirs()
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise ConfigError(f"backfill: not a directory: {', '.join(map(str, missing))}")
    if not dirs:
        print(
            "backfill: no Claude Code projects/ folder found; name one: session-db backfill DIR",
            file=sys.stderr,
        )
        return EX_OK
    # Real paths, as transcript_files keys them. rglob does not enter symlinked folders, so
    # below a resolved folder only the file itself can be a link (cheaper than resolving each).
    files = sorted(
        {
            p.resolve() if p.is_symlink() else p
            for d in dirs
            for p in d.resolve().rglob("*.jsonl")
            if p.is_file()
        }
    )
    total_bytes = sum(p.stat().st_size for p in files)
    t0 = time.monotonic()
    with migrated_sink(settings) as sink:
        reader = TranscriptReader(sink, settings.host)
        new = reader.register(files)
        progress = Progress(len(files), total_bytes)
        stats = reader.sync(only={str(p) for p in files}, progress=progress.update)
        progress.finish(stats)
        unpriced = sink.connection().execute(db.SELECT_UNPRICED_MODELS).fetchall()
    seconds = time.monotonic() - t0
    print(
        f"backfill: {len(files)} files ({new} new to session-db) in {', '.join(map(str, dirs))}\n"
        f"  read {stats.bytes / 1e6:.1f} MB, {stats.lines} lines ({stats.bad_lines} unreadable) "
        f"in {seconds:.1f} s ({stats.bytes / 1e6 / max(seconds, 1e-6):.1f} MB/s)\n"
        f"  responses: {stats.responses} seen, {stats.inserted} new, {stats.updated} merged; "
        f"{stats.resets} files re-read from the start, {stats.missing} gone"
    )
    for model, count in unpriced:
        print(
            f"  warning: {count} responses of model {model!r} have no price: session-db prices set {model} …"
        )
    return EX_OK


def cmd_prices(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import db, prices

    if args.prices_command == "check":
        from daemon import price_drift
        from daemon.errors import EX_PRICE_DRIFT

        with migrated_sink(settings) as sink:
            drifts = price_drift.find(sink.connection())
        if args.json:
            rows = [d.as_json() for d in drifts]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(price_drift.render(drifts))
        return EX_PRICE_DRIFT if drifts else EX_OK
    with migrated_sink(settings) as sink:
        conn = sink.connection()
        if args.prices_command == "set":
            values = {c: getattr(args, c) for c in db.PRICE_COLUMNS}
            when = args.effective_from
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            prices.set_price(conn, args.model_prefix, values, when, args.note)
        sys.stdout.write(prices.render(prices.list_prices(conn)))
    return EX_OK


def cmd_report(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import reports

    f = reports.Filters(
        since=args.since,
        until=args.until,
        tz=reports.check_zone(args.tz or reports.local_zone()),
        project=args.project,
        host=args.host,
        breakdown=args.breakdown,
        branches=getattr(args, "branches", False),
        active=getattr(args, "active", False),
    )
    if args.report_kind == "html":
        from daemon import html_report

        with migrated_sink(settings) as sink:
            size = html_report.write(sink.connection(), f, args.file)
        print(f"wrote {args.file} ({size:,} bytes)")
        return EX_OK
    with migrated_sink(settings) as sink:
        report = reports.build(sink.connection(), args.report_kind, f)
    if args.json:
        out = orjson.dumps(report, option=orjson.OPT_INDENT_2, default=reports.json_value).decode()
        sys.stdout.write(out + "\n")
    elif args.csv:
        sys.stdout.write(reports.render_csv(report))
    else:
        sys.stdout.write(reports.render_table(report))
    return EX_OK


def cmd_top(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import live_view

    with migrated_sink(settings) as sink:
        sampler = live_view.Sampler(sink.connection())
        return live_view.run(sampler.take, sys.stdout, once=args.once)


def cmd_projects(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import projects

    with migrated_sink(settings) as sink:
        conn = sink.connection()
        if args.projects_command == "alias":
            projects.set_alias(conn, args.path, args.name)
        elif args.projects_command == "rm" and not projects.remove_alias(conn, args.path):
            print(f"session-db: no alias for {args.path}", file=sys.stderr)
            return 1
        sys.stdout.write(projects.render(projects.list_aliases(conn)))
    return EX_OK


def cmd_budget(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import budgets, reports

    with migrated_sink(settings) as sink:
        conn = sink.connection()
        if args.budget_command in ("set", "rm"):
            period = next(p for p in ("daily", "weekly", "monthly") if getattr(args, p))
            if args.budget_command == "set":
                tz = reports.check_zone(args.tz or reports.local_zone())
                budgets.set_budget(conn, period, budgets.parse_usd(getattr(args, period)), args.project, tz)
            elif not budgets.remove_budget(conn, period, args.project):
                print(f"session-db: no {period} budget for {args.project or 'all projects'}", file=sys.stderr)
                return 1
        rows = reports.budget_rows(conn, None)
        conn.commit()
        lines = reports.budget_lines(rows)
        none = "no budgets (add one: session-db budget set --daily USD)\n"
        sys.stdout.write("\n".join(lines[1:]) + "\n" if lines else none)
    return EX_OK


def cmd_quarantine(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import quarantine
    from daemon.spool import Spool

    spool = Spool(settings.spool)
    action = args.quarantine_command
    if action == "list":
        found = quarantine.entries(spool)
        if args.json:
            rows = [{**e.record, "name": e.name, "size": e.size} for e in found]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
            return EX_OK
        for e in found:
            when = datetime.fromtimestamp(e.quarantined_at, UTC).isoformat(timespec="seconds")
            print(f"{e.name}  {e.size:>9} B  {when}  {e.reason}: {e.detail[:100]}")
        print(f"{len(found)} quarantined in {spool.quarantine}", file=sys.stderr)
        return EX_OK
    if action == "show":
        try:
            sys.stdout.write(quarantine.show(spool, args.name))
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from exc
        return EX_OK
    if action == "replay":
        if args.all == bool(args.names):
            raise ConfigError("quarantine replay: name the files, or give --all")
        names = [e.name for e in quarantine.entries(spool)] if args.all else args.names
        results = quarantine.replay(spool, names, settings.host)
        for r in results:
            print(f"{r.outcome:<9} {r.name}" + (f"  ({r.detail})" if r.detail else ""))
        replayed = sum(r.outcome == "replayed" for r in results)
        print(f"{replayed} of {len(results)} moved back to {spool.new}; the daemon (or `session-db ingest --once`)"
              " ingests them", file=sys.stderr)  # fmt: skip
        return EX_OK if replayed == len(results) else 1
    try:
        seconds = quarantine.parse_duration(args.older_than)
    except ValueError as exc:
        raise ConfigError(f"quarantine purge --older-than: {exc}") from exc
    doomed = quarantine.purge(spool, seconds, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for e in doomed:
        print(f"{verb} {e.name} ({e.reason})")
    print(f"{len(doomed)} {verb}", file=sys.stderr)
    return EX_OK


def cmd_service(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import units

    home = Path(os.environ.get("HOME") or Path.home())
    p = units.plan(args.system, settings.url, home, args.as_user)
    if args.dry_run:
        sys.stdout.write(f"# {p.unit_path}\n{p.unit_text}")
        if p.env_text is not None:
            print(f"# {p.env_path} (mode 0600) would hold SESSION_DB_URL (password masked here): "
                  f"{config.mask_url(settings.url)}")  # fmt: skip
        return EX_OK
    units.apply(p)
    print(f"wrote {p.unit_path}" + (f" and {p.env_path} (0600)" if p.env_text is not None else ""))
    for command in p.commands:
        if args.enable:
            done = subprocess.run(command, check=False)
            if done.returncode != 0:
                print(f"failed ({done.returncode}): {' '.join(command)}", file=sys.stderr)
                return done.returncode
        else:
            print("  " + " ".join(command))
    return EX_OK


def cmd_roles(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import roles

    names = roles.Roles(owner=args.owner, writer=args.writer, analyst=args.analyst)
    if not args.apply:
        sys.stdout.write(roles.script(names))
        return EX_OK
    if not settings.url:
        raise ConfigError(
            "roles --apply is for a shared server: set SESSION_DB_URL (the embedded cluster has one user)"
        )
    done = roles.apply(settings.url, names, connect_timeout_s=settings.connect_timeout_s)
    print(f"roles applied on {config.mask_url(settings.url)}")
    for name in names.names:
        print(f"  {name}: {'created' if name in done.created else 'already there'}")
    if done.schema_revision is None:
        print(f"no session-db schema yet: run `session-db migrate` as a member of {names.owner}, "
              "then `session-db roles --apply` again to grant the writer its tables")  # fmt: skip
    else:
        print(f"  schema revision {done.schema_revision}; "
              f"{names.owner} owns {done.owned} tables and views")  # fmt: skip
    return EX_OK


def cmd_doctor(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import doctor

    home = Path(os.environ.get("HOME") or Path.home())
    findings = doctor.run(settings, home, args.project.resolve() if args.project else None)
    for f in findings:
        print(f"{f.level.upper():<4}  {f.what}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return 1 if any(f.level == "fail" for f in findings) else EX_OK


COMMANDS: dict[str, Callable[[config.Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "ingest": cmd_ingest,
    "migrate": cmd_migrate,
    "maintain": cmd_maintain,
    "prune": cmd_prune,
    "status": cmd_status,
    "config": cmd_config,
    "psql": cmd_psql,
    "hooks": cmd_hooks,
    "backfill": cmd_backfill,
    "prices": cmd_prices,
    "quarantine": cmd_quarantine,
    "service": cmd_service,
    "doctor": cmd_doctor,
    "roles": cmd_roles,
    "report": cmd_report,
    "projects": cmd_projects,
    "top": cmd_top,
    "budget": cmd_budget,
}
