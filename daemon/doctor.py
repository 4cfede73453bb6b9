"""`session-db doctor`: why would hooks be installed but nothing arrive?

Checks each Claude Code settings file for validity and for our handlers: the hook command
exists and is executable, its spool is the daemon's spool, every event Claude Code knows is
covered; that the hook is not installed at two levels (events recorded twice); then that the
spool is usable, whether anything waits in it, and whether a daemon runs on this machine.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon import claude_events, config, db, installer
from daemon.errors import ConfigError, InstallerError
from daemon.spool import Spool


@dataclass(frozen=True)
class Finding:
    """One check: ok, warn or fail, with what to do."""

    level: str
    what: str
    fix: str = ""


def _our_commands(data: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return found
    for event, groups in hooks.items():
        for group in groups if isinstance(groups, list) else []:
            for handler in group.get("hooks", []) if isinstance(group, dict) else []:
                command = handler.get("command") if isinstance(handler, dict) else None
                if isinstance(command, str) and installer.HOOK_NAME in command:
                    found.setdefault(event, []).append(command)
    return found


def check_settings(path: Path, settings: config.Settings, events: tuple[str, ...]) -> list[Finding]:
    if not path.exists():
        return []
    try:
        _, data = installer.load_settings(path, strict=True)
    except InstallerError as exc:
        return [
            Finding(
                "fail", str(exc), f"fix {path}; Claude Code skips an invalid settings file entirely"
            )
        ]
    ours = _our_commands(data)
    if not ours:
        return [Finding("ok", f"{path}: valid, no session-db hook")]
    out = [Finding("ok", f"{path}: valid, session-db hook on {len(ours)} events")]
    missing = [e for e in events if e not in ours]
    if missing:
        out.append(
            Finding(
                "warn",
                f"{path}: no session-db hook for {', '.join(missing)}",
                "session-db hooks install",
            )
        )
    spool = settings.spool.resolve()
    for event, commands in sorted(ours.items()):
        for command in commands:
            try:
                argv = shlex.split(command)
            except ValueError as exc:
                out.append(
                    Finding(
                        "fail",
                        f"{path}: {event}: command cannot be parsed ({exc})",
                        "session-db hooks install",
                    )
                )
                continue
            hook = Path(argv[0])
            if not (hook.is_file() and os.access(hook, os.X_OK)):
                out.append(
                    Finding(
                        "fail",
                        f"{path}: {event}: {hook} is missing or not executable",
                        "session-db hooks install",
                    )
                )
            hook_spool = (
                Path(argv[argv.index("--spool") + 1]).resolve() if "--spool" in argv[:-1] else None
            )
            if hook_spool != spool:
                out.append(
                    Finding(
                        "fail",
                        f"{path}: {event}: the hook writes to {hook_spool}, the daemon reads {spool}",
                        "run `session-db hooks install` with the daemon's settings (SESSION_DB_SPOOL)",
                    )
                )
    return out


PROC = Path("/proc")


def _spool_of(pid_dir: Path) -> Path | None:
    """The spool a running process resolved, from its environment (None if unreadable)."""
    try:
        raw = (pid_dir / "environ").read_bytes()
    except OSError:
        return None
    env = dict(
        item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item
    )
    try:
        return config.load(env).spool.resolve()
    except (ConfigError, ValueError, OSError):  # its configuration is broken: it serves no spool
        return None


def running_daemons(spool: Path, proc: Path = PROC) -> list[int]:
    """Pids of this user's `session-db run` processes (`session-db run`, `python -m daemon run`)
    that read `spool`."""
    pids = []
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        args = [a.decode(errors="replace") for a in argv if a]
        is_ours = any(Path(a).name == "session-db" for a in args[:2]) or (
            "-m" in args and "daemon" in args
        )
        if is_ours and "run" in args and _spool_of(entry) == spool.resolve():
            pids.append(int(entry.name))
    return pids


def check_daemon(spool: Path, proc: Path = PROC) -> Finding:
    pids = running_daemons(spool, proc)
    if pids:
        return Finding("ok", f"session-db run reads {spool} (pid {', '.join(map(str, pids))})")
    return Finding(
        "fail",
        f"no `session-db run` on this machine reads {spool}: events wait there",
        "systemctl --user start session-db (or run `session-db run`; `session-db service install` sets it up)",
    )


def check_levels(files_with_hook: list[Path], user_file: Path) -> list[Finding]:
    """Our hook at user level and in a project file fires twice for that project's events."""
    project_files = [f for f in files_with_hook if f != user_file]
    if user_file in files_with_hook and project_files:
        return [
            Finding(
                "warn",
                f"the session-db hook is installed both in {user_file} and in "
                f"{', '.join(map(str, project_files))}: every event of that project is recorded twice",
                f"session-db hooks uninstall --project {project_files[0].parent.parent}",
            )
        ]
    return []


def run(settings: config.Settings, home: Path, project: Path | None) -> list[Finding]:
    events = claude_events.detect_claude_events(claude_events.claude_version())
    findings: list[Finding] = []
    files = [installer.settings_path(home, None)]
    if project is not None:
        files += [
            project / ".claude" / "settings.json",
            project / ".claude" / "settings.local.json",
        ]
    with_hook = []
    for path in files:
        found = check_settings(path, settings, events)
        if any("session-db hook on" in f.what for f in found):
            with_hook.append(path)
        findings += found
    findings += check_levels(with_hook, files[0])
    if not any("session-db hook on" in f.what for f in findings):
        findings.append(
            Finding("fail", "no settings file has the session-db hook", "session-db hooks install")
        )
    findings += price_findings(settings)
    spool = Spool(settings.spool)
    if not spool.new.is_dir():
        findings.append(
            Finding("warn", f"spool {spool.new} does not exist yet (no event ever arrived)", "")
        )
    elif not os.access(spool.new, os.W_OK | os.X_OK):
        findings.append(
            Finding(
                "fail",
                f"spool {spool.new} is not writable",
                f"fix the owner or mode of {spool.root}",
            )
        )
    else:
        backlog = spool.backlog()
        if backlog.files:
            findings.append(
                Finding(
                    "warn",
                    f"{backlog.files} events wait in {spool.new} (oldest {backlog.oldest_age_s:.0f} s)",
                    "is `session-db run` running? `session-db status` shows the database state",
                )
            )
        else:
            findings.append(Finding("ok", f"spool {spool.new}: nothing waiting"))
    findings.append(check_daemon(settings.spool))
    return findings


def price_findings(settings: config.Settings) -> list[Finding]:
    """Models unpriced or priced unlike Claude Code (`prices check`), when SESSION_DB_URL names a
    database at this version's schema (doctor never starts the embedded cluster)."""
    if not settings.url:
        return []
    from daemon import migrations, price_drift

    try:
        state = migrations.schema_state(settings.url)
        if state.verdict != "head":
            return []
        with db.connect(
            settings.url,
            connect_timeout_s=settings.connect_timeout_s,
            statement_timeout_ms=settings.statement_timeout_ms,
            lock_timeout_ms=config.LOCK_TIMEOUT_MS,
        ) as conn:
            drifts = price_drift.find(conn)
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not fail on the database
        return [Finding("warn", f"price check skipped: {type(exc).__name__}", "session-db status")]
    if not drifts:
        return [Finding("ok", "prices: every model seen is priced and agrees with Claude Code")]
    return [Finding("warn", f"price drift: {d.describe()}", d.fix) for d in drifts]
