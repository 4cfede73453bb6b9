"""`search` and `show`: the conversation archive (the messages table)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from daemon import config
from daemon.database import migrated_sink
from daemon.errors import EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    se = sub.add_parser(
        "search",
        help="full-text search of the conversation archive (prompts, replies, tool calls)",
        description='Matches WORDS (web-search syntax: words, "a phrase", -not, or) against the '
        "archived messages; prints time, session, project and a snippet with the hits marked.",
    )
    se.add_argument("words", help="what to look for")
    se.add_argument("--since", help="ISO date/time or a duration before now (7d)")
    se.add_argument("--until", help="ISO date/time or a duration before now")
    se.add_argument("--project", help="part of the project directory (cwd)")
    se.add_argument("--role", choices=("user", "assistant", "system"), help="only this role")
    se.add_argument("--session", help="a Claude Code session id (or its start)")
    se.add_argument("--limit", type=int, default=50, help="most matches (default 50)")
    se.add_argument("--json", action="store_true", help="machine-readable output")
    se.set_defaults(handler=cmd_search)
    sh = sub.add_parser(
        "show",
        help="print an archived session as a conversation, subagents nested, cost per turn",
    )
    sh.add_argument("session", help="a Claude Code session id (or its start)")
    sh.add_argument("--format", choices=("text", "md", "json"), default="text")
    sh.add_argument(
        "--full", action="store_true", help="tool calls, results and attachments in full"
    )
    sh.set_defaults(handler=cmd_show)


def cmd_search(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import conversations

    now = datetime.now(UTC)
    with migrated_sink(settings) as sink:
        matches = conversations.search(
            sink.connection(),
            args.words,
            since=conversations.parse_when(args.since, now) if args.since else None,
            until=conversations.parse_when(args.until, now) if args.until else None,
            project=args.project,
            role=args.role,
            session=args.session,
            limit=args.limit,
        )
    if args.json:
        sys.stdout.write(conversations.matches_json(matches).decode() + "\n")
    else:
        sys.stdout.write(conversations.render_matches(matches, tty=sys.stdout.isatty()))
    return EX_OK


def cmd_show(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import conversations

    with migrated_sink(settings) as sink:
        conv = conversations.load(sink.connection(), args.session)
    sys.stdout.write(conversations.render(conv, args.format, full=args.full))
    return EX_OK
