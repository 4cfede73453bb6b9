"""`hooks install` and `hooks uninstall`: our handler in Claude Code's settings files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daemon import config
from daemon.errors import EX_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    hooks.set_defaults(handler=cmd_hooks)


def cmd_hooks(settings: config.Settings, args: argparse.Namespace) -> int:
    from daemon import claude_events, installer
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
        version = claude_events.claude_version()
        # On stderr with --dry-run, so that stdout stays a clean diff.
        print(
            claude_events.describe_detection(version), file=sys.stderr if args.dry_run else sys.stdout
        )
        events = claude_events.detect_claude_events(version)
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
