"""`backfill`: import the transcripts that already exist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon import backfill, config
from daemon.errors import EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bf = sub.add_parser(
        "backfill",
        help="import existing Claude Code transcripts (token usage), idempotently",
        description="Read every *.jsonl transcript under DIR (default: the projects/ folder of each Claude "
        "config dir: $CLAUDE_CONFIG_DIR, ~/.claude, ~/.config/claude) into token_usage. Safe to run again: "
        "files are read from where the last run stopped, and responses are deduplicated by key.",
    )
    bf.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="folders to scan recursively")
    bf.set_defaults(handler=cmd_backfill, logs_progress=True)


def cmd_backfill(settings: config.Settings, args: argparse.Namespace) -> int:
    summary = backfill.run(settings, args.dirs)
    if summary is None:
        print(
            "backfill: no Claude Code projects/ folder found; name one: session-db backfill DIR",
            file=sys.stderr,
        )
        return EX_OK
    sys.stdout.write(summary.render())
    return EX_OK
