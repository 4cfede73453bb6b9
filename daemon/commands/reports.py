"""`report`, `top`, `projects` and `budget`: answers without SQL, over the cost views."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import orjson

from daemon import config
from daemon.database import migrated_sink
from daemon.errors import EX_OK
from daemon.reports import KINDS

BUDGET_PERIODS = ("daily", "weekly", "monthly")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_report(sub)
    tp = sub.add_parser(
        "top",
        help="live view: running Claude sessions, subagents, tools, cost, burn rate, events/s, backlog",
        description="Refreshes every second; q or Ctrl-C quits. When stdout is not a terminal it prints "
        "plain lines, one block per refresh.",
    )
    tp.add_argument("--once", action="store_true", help="print one snapshot as plain lines and exit")
    tp.set_defaults(handler=cmd_top)
    pj = sub.add_parser("projects", help="count several directories (on any host) as one project")
    pjsub = pj.add_subparsers(dest="projects_command", metavar="ACTION")
    pjsub.add_parser("list", help="every alias (default)")
    pja = pjsub.add_parser("alias", help="count the directory PATH as project NAME")
    pja.add_argument("path", metavar="PATH", help="absolute directory, as Claude Code records cwd")
    pja.add_argument("name", metavar="NAME")
    pjr = pjsub.add_parser("rm", help="remove the alias of PATH")
    pjr.add_argument("path", metavar="PATH")
    pj.set_defaults(handler=cmd_projects)
    bu = sub.add_parser(
        "budget", help="spending limits per day, week or month (the daemon warns once per period)"
    )
    busub = bu.add_subparsers(dest="budget_command", metavar="ACTION")
    busub.add_parser("list", help="every budget with its spend in the current period (default)")
    for action, text in (("set", "add or change a budget"), ("rm", "remove a budget")):
        b = busub.add_parser(action, help=text)
        period = b.add_mutually_exclusive_group(required=True)
        for name in BUDGET_PERIODS:
            if action == "set":
                period.add_argument(f"--{name}", metavar="USD", help=f"{name} limit")
            else:
                period.add_argument(f"--{name}", action="store_true", help=f"the {name} budget")
        b.add_argument("--project", help="only this project (default: all usage)")
        if action == "set":
            b.add_argument(
                "--tz", help="zone where days, weeks and months begin (default: this machine's)"
            )
    bu.set_defaults(handler=cmd_budget)


def _register_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`report`: one sub-command per report kind, sharing the filter options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="first day (in --tz)")
    common.add_argument("--until", type=_date, metavar="YYYY-MM-DD", help="last day, inclusive")
    common.add_argument("--tz", help="IANA time zone for days and times (default: this machine's)")
    common.add_argument("--project", help="only this project (alias name or directory)")
    common.add_argument("--host", help="only usage read on this host")
    common.add_argument(
        "--breakdown", action="store_true", help="one row per model within each group"
    )
    fmt = common.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json", action="store_true", help="the documented JSON document (docs/reports.md)"
    )
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
            k.add_argument(
                "--active", action="store_true", help="only the active block, with its burn rate"
            )
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
    rp.set_defaults(handler=cmd_report)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


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
            period = next(p for p in BUDGET_PERIODS if getattr(args, p))
            if args.budget_command == "set":
                tz = reports.check_zone(args.tz or reports.local_zone())
                limit = budgets.parse_usd(getattr(args, period))
                budgets.set_budget(conn, period, limit, args.project, tz)
            elif not budgets.remove_budget(conn, period, args.project):
                print(
                    f"session-db: no {period} budget for {args.project or 'all projects'}",
                    file=sys.stderr,
                )
                return 1
        rows = reports.budget_rows(conn, None)
        conn.commit()
        lines = reports.budget_lines(rows)
        none = "no budgets (add one: session-db budget set --daily USD)\n"
        sys.stdout.write("\n".join(lines[1:]) + "\n" if lines else none)
    return EX_OK
