"""`service install` (the systemd unit) and `roles` (least-privilege roles on a shared server)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from daemon import config
from daemon.errors import EX_OK, ConfigError

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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    svc.set_defaults(handler=cmd_service)
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
    rl.set_defaults(handler=cmd_roles)


def cmd_service(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import systemd_units

    home = Path(os.environ.get("HOME") or Path.home())
    p = systemd_units.plan(
        args.system, settings.url, home, args.as_user,
        state_dir=settings.state_dir, spool=settings.spool, config_file=settings.config_file,
    )  # fmt: skip
    if args.dry_run:
        sys.stdout.write(f"# {p.unit_path}\n{p.unit_text}")
        if p.env_text is not None:
            print(f"# {p.env_path} (mode 0600) would hold SESSION_DB_URL (password masked here): "
                  f"{config.mask_url(settings.url)}")  # fmt: skip
        print("# then, with --enable, it would run:" if not args.enable else "# then it would run:")
        for command in p.commands:
            print("  " + " ".join(command))
        return EX_OK
    systemd_units.apply(p)
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
