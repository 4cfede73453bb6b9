"""`quarantine`: list, show, replay or purge spool files that could not become rows."""

from __future__ import annotations

import argparse
import sys

import orjson

from daemon import config
from daemon.errors import EX_OK, ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    qu.set_defaults(handler=cmd_quarantine)


def cmd_quarantine(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import quarantine
    from daemon.spool import Spool

    spool = Spool(settings.spool)
    action = args.quarantine_command
    if action == "list":
        found = quarantine.entries(spool)
        if args.json:
            rows = [e.as_json() for e in found]
            sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
            return EX_OK
        for e in found:
            print(f"{e.name}  {e.size:>9} B  {e.when}  {e.reason}: {e.detail[:100]}")
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
