"""The `session-db` command."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = config.load()
    except SessionDbError as exc:
        print(f"session-db: {exc}", file=sys.stderr)
        return exc.exit_code
    from daemon import log as logsetup

    logsetup.configure(settings.log_format)
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
        env = dict(os.environ)
        target, password = _strip_password(url)
        if password:
            env["PGPASSWORD"] = password
        return subprocess.call([psql, "-d", target, *extra], env=env)


def _strip_password(url: str) -> tuple[str, str | None]:
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


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


COMMANDS: dict[str, Callable[[config.Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "ingest": cmd_ingest,
    "migrate": cmd_migrate,
    "status": cmd_status,
    "config": cmd_config,
    "psql": cmd_psql,
    "hooks": cmd_hooks,
}
