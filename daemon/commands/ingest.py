"""`run` (the daemon) and `ingest --once` (one pass, for cron and tests)."""

from __future__ import annotations

import argparse

import structlog

from daemon import __version__, config
from daemon.errors import EX_OK

log = structlog.get_logger("session_db.cli")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run", help="run the daemon until SIGTERM/SIGINT (a second signal exits at once)"
    )
    run.set_defaults(handler=cmd_run, logs_progress=True)
    ing = sub.add_parser("ingest", help="drain the spool and state files, then exit (tests, cron)")
    ing.add_argument(
        "--once", action="store_true", required=True, help="drain once and exit (required)"
    )
    ing.set_defaults(handler=cmd_ingest, logs_progress=True)


def cmd_run(settings: config.Settings, _args: argparse.Namespace) -> int:
    from daemon.worker import Service

    log.info(
        "starting",
        version=__version__,
        spool=str(settings.spool),
        host=settings.host,
        embedded=settings.embedded,
    )
    return Service(settings).run()


def cmd_ingest(settings: config.Settings, _args: argparse.Namespace) -> int:
    from daemon.worker import Service

    stats = Service(settings).run_once()
    log.info(
        "ingest_done",
        files=stats.files,
        rows=stats.inserted,
        duplicates=stats.duplicates,
        quarantined=stats.quarantined,
        deferred=stats.deferred,  # left in new/ for a later pass (mid-write, unreadable)
    )
    return EX_OK
