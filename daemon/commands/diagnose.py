"""`status`, `config`, `psql` and `doctor`: what state things are in, and why."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from daemon import config
from daemon.database import database
from daemon.errors import EX_OK, ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser(
        "status", help="spool backlog, quarantine, database and schema, last events per host"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(handler=cmd_status)
    cfg = sub.add_parser(
        "config", help="print the effective settings and where each came from (password masked)"
    )
    cfg.set_defaults(handler=cmd_config)
    ps = sub.add_parser(
        "psql", help="open psql on the database (starts the embedded cluster if needed)"
    )
    ps.add_argument("psql_args", nargs=argparse.REMAINDER, help="extra arguments passed to psql")
    ps.set_defaults(handler=cmd_psql)
    doc = sub.add_parser("doctor", help="find why hooks are installed but nothing arrives")
    doc.add_argument(
        "--project", metavar="DIR", type=Path, help="also check DIR/.claude/settings*.json"
    )
    doc.set_defaults(handler=cmd_doctor)


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


def cmd_doctor(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import doctor

    home = Path(os.environ.get("HOME") or Path.home())
    findings = doctor.run(settings, home, args.project.resolve() if args.project else None)
    for f in findings:
        print(f"{f.level.upper():<4}  {f.what}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return 1 if any(f.level == "fail" for f in findings) else EX_OK
