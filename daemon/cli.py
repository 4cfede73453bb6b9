"""The command line: one parser, settings, logging, and a dispatch to the command's handler.

Each command's arguments and handler live together in daemon/commands/<group>.py; this module
only builds the parser from those groups and runs the chosen handler with exit codes from
daemon/errors.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import structlog

from daemon import __version__, config
from daemon.commands import GROUPS
from daemon.errors import EX_SOFTWARE, InputDataError, SessionDbError, UsageError

log = structlog.get_logger("session_db.cli")

DESCRIPTION = """\
session-db records every Claude Code hook event, workflow state file and transcript token
in PostgreSQL, so you can ask what your agents did, what it cost and where the time went.

Quick start:
  session-db run                 # daemon; a private PostgreSQL cluster if SESSION_DB_URL is unset
  session-db hooks install       # add our hook to ~/.claude/settings.json
  session-db doctor              # check that events can arrive
  session-db psql                # look at agent_logs, agents, claude_session_costs, tool_stats

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
    for group in GROUPS:
        group.register(sub)
    return p


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

    # A daemon or long work logs its progress; the other commands answer on stdout and log
    # only warnings and errors on stderr.
    level = logging.INFO if getattr(args, "logs_progress", False) else logging.WARNING
    logsetup.configure(settings.log_format, secrets=dsn.secrets(settings.url), level=level)
    try:
        return int(args.handler(settings, args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one exit code, logged once
        return _exit_code_of(exc)


def _exit_code_of(exc: Exception) -> int:
    """Report the exception that ended a command, once, and return its exit code."""
    if isinstance(exc, UsageError | InputDataError):  # the user's input: no log record
        print(f"session-db: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, SessionDbError):
        log.error("fatal", error=str(exc), exit_code=exc.exit_code)
        return exc.exit_code
    from daemon import db

    if db.is_driver_error(exc):  # a one-shot command met the database: classified here, once
        err = db.classify(exc)
        exit_code = int(getattr(err, "exit_code", EX_SOFTWARE))
        log.error("database_error", error=str(err), exit_code=exit_code)
        return exit_code
    log.exception("crashed")  # a bug or a dead side task: exit non-zero so systemd restarts us
    return EX_SOFTWARE
