"""`session-db hooks install` / `uninstall`: the hook script and Claude Code settings files.

Claude Code reads hooks from JSON settings files (docs/design/claude-code.md §1). This module
adds one command handler per event that points at the installed hook, replaces a previous
one of ours instead of adding a second, and leaves every other hook and key untouched.
A plan is computed first (`plan_install` / `plan_uninstall`), so `--dry-run` can show the
diff; `apply` writes it with a backup and an atomic rename.

Our handlers are recognised by the hook's file name in their command string.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon import durable
from daemon.claude_events import EXCLUDED_EVENTS, KNOWN_EVENTS, TOOL_EVENTS
from daemon.errors import InstallerError

HOOK_NAME = "session-db-hook"
HOOK_TIMEOUT_S = 10  # also raises Claude Code's shared 1.5 s SessionEnd budget to this value
_BACKUP_SUFFIX = ".bak-"
BACKUPS_KEPT = 5  # of each settings file; older `.bak-<time>` copies are deleted


@dataclass(frozen=True)
class InstallPlan:
    """The settings file text before and after a change; `before` is None for a new file."""

    path: Path
    before: str | None
    after: str
    changed: bool
    warnings: list[str]
    remove: bool = False  # nothing but our hooks was in the file: delete it instead of leaving {}


# ---------------------------------------------------------------------------------------
# The hook script


def installed_hook_path(data_dir: Path) -> Path:
    """Where `install_hook_script` puts the hook."""
    return data_dir / "bin" / HOOK_NAME


def install_hook_script(source: Path, data_dir: Path) -> Path:
    """Copy the packaged hook to data_dir/bin (mode 0755), byte for byte.

    It keeps `#!/bin/sh`: measured with tests/bench/bench_hook.py, dash runs it faster than
    bash takes its $EPOCHREALTIME/$SRANDOM path (bash forks with clone, dash with vfork).
    """
    target = installed_hook_path(data_dir)
    try:
        script = source.read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        if (
            target.is_file()
            and target.read_bytes() == script
            and target.stat().st_mode & 0o7777 == 0o755
        ):
            return target
        durable.replace_file(target, script, 0o755)
    except OSError as exc:
        raise InstallerError(
            f"cannot install the hook from {source} to {target}: {exc.strerror or exc}; "
            f"check that {target.parent} is writable"
        ) from exc
    return target


# ---------------------------------------------------------------------------------------
# Settings files


def settings_path(home: Path, project: Path | None) -> Path:
    """User settings (honouring $CLAUDE_CONFIG_DIR) or a project's settings.local.json."""
    if project is not None:
        return project / ".claude" / "settings.local.json"
    config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir).expanduser() / "settings.json"
    return home / ".claude" / "settings.json"


def hook_command(hook: Path, spool: Path, event: str) -> str:
    """The shell command Claude Code runs for one event."""
    return shlex.join([str(hook), "--spool", str(spool), event])


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_settings(path: Path, *, strict: bool = True) -> tuple[str | None, dict[str, Any]]:
    """(text, parsed object) of a settings file; (None, {}) when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallerError(f"cannot read {path}: {exc}; fix its permissions or encoding") from exc
    if not text.strip():
        return text, {}
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        raise InstallerError(
            f"{path} is not valid JSON ({exc}); Claude Code ignores such a file too. "
            "Fix or remove it, then run the command again; it was left unchanged"
        ) from exc
    if not isinstance(data, dict):
        raise InstallerError(
            f"{path} holds a JSON {type(data).__name__}, not an object; fix it and run again"
        )
    if strict:
        _check_shape(path, data)
    return text, data


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    hooks = data.get("hooks")
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise InstallerError(f'"hooks" in {path} is not an object; fix it and run again')
    for event, groups in hooks.items():
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise InstallerError(
                f'"hooks.{event}" in {path} is not a list of matcher groups; fix it and run again'
            )
        for group in groups:
            handlers = group.get("hooks", [])
            if not isinstance(handlers, list):
                raise InstallerError(
                    f'a matcher group of "hooks.{event}" in {path} has a "hooks" value that '
                    "is not a list; fix it and run again"
                )


def _is_ours(handler: object, names: frozenset[str]) -> bool:
    if not isinstance(handler, dict):
        return False
    command = handler.get("command")
    return isinstance(command, str) and any(name in command for name in names)


def _indent_of(text: str | None) -> int | str:
    """The indentation unit of an existing JSON file, so a rewrite keeps its look."""
    if text:
        match = re.search(r'^([ \t]+)"', text, re.MULTILINE)
        if match:
            unit = match.group(1)
            return unit if "\t" in unit else len(unit)
    return 2


def _dump(data: dict[str, Any], like: str | None) -> str:
    return json.dumps(data, indent=_indent_of(like), ensure_ascii=False) + "\n"


def _desired_group(event: str, command: str) -> dict[str, Any]:
    handler = {"type": "command", "command": command, "timeout": HOOK_TIMEOUT_S}
    if event in TOOL_EVENTS:
        return {"matcher": "*", "hooks": [handler]}
    return {"hooks": [handler]}


def _remove_ours(groups: list[Any], names: frozenset[str]) -> tuple[list[Any], bool]:
    """The groups without our handlers (groups left empty by that dropped), and whether any went."""
    out: list[Any] = []
    removed = False
    for group in groups:
        handlers = group.get("hooks")
        if not isinstance(handlers, list):
            out.append(group)
            continue
        kept = [h for h in handlers if not _is_ours(h, names)]
        if len(kept) == len(handlers):
            out.append(group)
            continue
        removed = True
        if kept:
            out.append({**group, "hooks": kept})
    return out, removed


def _contains_ours(data: dict[str, Any], names: frozenset[str]) -> bool:
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        return False
    for groups in hooks.values():
        if not isinstance(groups, list):
            continue
        for group in groups:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if isinstance(handlers, list) and any(_is_ours(h, names) for h in handlers):
                return True
    return False


def _plan(
    path: Path, before: str | None, old: dict[str, Any], new: dict[str, Any], warnings: list[str]
) -> InstallPlan:
    if before is not None and new == old:
        return InstallPlan(path, before, before, changed=False, warnings=warnings)
    return InstallPlan(path, before, _dump(new, before), changed=True, warnings=warnings)


def plan_install(
    settings_file: Path,
    hook: Path,
    spool: Path,
    events: Sequence[str],
    other_level_file: Path | None,
) -> InstallPlan:
    """What `hooks install` would make of settings_file: one handler of ours per event."""
    unknown = [e for e in events if e not in KNOWN_EVENTS and e not in EXCLUDED_EVENTS]
    if unknown:
        raise InstallerError(
            f"unknown Claude Code event(s) {', '.join(unknown)}: an unknown name makes Claude "
            f"Code skip the whole settings file; use names from: {', '.join(KNOWN_EVENTS)}"
        )
    warnings: list[str] = []
    skipped = [e for e in events if e in EXCLUDED_EVENTS]
    if skipped:
        warnings.append(
            f"not installed for {', '.join(skipped)}: a hook there replaces git worktree "
            "handling, which a logging hook must not do"
        )
    wanted = [e for e in dict.fromkeys(events) if e not in EXCLUDED_EVENTS]
    names = frozenset({HOOK_NAME, hook.name})

    before, old = load_settings(settings_file)
    new: dict[str, Any] = json.loads(json.dumps(old))  # deep copy, same key order
    hooks: dict[str, Any] = new.setdefault("hooks", {})

    for event in list(hooks):
        groups: list[Any] = hooks[event]
        if event in wanted:
            desired = _desired_group(event, hook_command(hook, spool, event))
            # Update in place when our handler sits alone in its own group, so a
            # re-install with another spool changes one line instead of moving blocks.
            own = [
                i
                for i, g in enumerate(groups)
                if len(g.get("hooks", [])) == 1 and _is_ours(g["hooks"][0], names)
            ]
            rest, _ = _remove_ours([g for i, g in enumerate(groups) if i not in own[:1]], names)
            if own:
                rest.insert(min(own[0], len(rest)), desired)
            else:
                rest.append(desired)
            hooks[event] = rest
        else:
            rest, removed = _remove_ours(groups, names)
            if removed and not rest:
                del hooks[event]
            else:
                hooks[event] = rest
    for event in wanted:
        if event not in hooks:
            hooks[event] = [_desired_group(event, hook_command(hook, spool, event))]

    if not hooks and "hooks" not in old:
        del new["hooks"]
    if new.get("disableAllHooks") is True:
        warnings.append(
            f'{settings_file} sets "disableAllHooks": true, so no hook runs and nothing is '
            "recorded until it is removed"
        )
    if other_level_file is not None:
        try:
            _, other = load_settings(other_level_file, strict=False)
        except InstallerError as exc:
            warnings.append(f"could not check {other_level_file} for a second hook: {exc}")
        else:
            if _contains_ours(other, frozenset({HOOK_NAME, hook.name})):
                warnings.append(
                    f"{other_level_file} also runs {HOOK_NAME}: events would be recorded twice; "
                    "uninstall it from one of the two levels"
                )
    return _plan(settings_file, before, old, new, warnings)


def plan_uninstall(settings_file: Path, hook: Path | None = None) -> InstallPlan:
    """What `hooks uninstall` would make of settings_file: every handler of ours removed."""
    names = frozenset({HOOK_NAME} | ({hook.name} if hook is not None else set()))
    before, old = load_settings(settings_file)
    if before is None:
        return InstallPlan(settings_file, None, "", changed=False, warnings=[])
    new: dict[str, Any] = json.loads(json.dumps(old))
    hooks = new.get("hooks")
    if isinstance(hooks, dict):
        emptied = False
        for event in list(hooks):
            rest, removed = _remove_ours(hooks[event], names)
            if removed and not rest:
                del hooks[event]
                emptied = True
            else:
                hooks[event] = rest
        if emptied and not hooks:
            del new["hooks"]
    if not new and _contains_ours(old, names):
        return InstallPlan(settings_file, before, "", changed=True, warnings=[], remove=True)
    return _plan(settings_file, before, old, new, [])


def _backup_path(target: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    candidate = target.with_name(f"{target.name}{_BACKUP_SUFFIX}{stamp}")
    n = 1
    while candidate.exists():
        candidate = target.with_name(f"{target.name}{_BACKUP_SUFFIX}{stamp}-{n}")
        n += 1
    return candidate


def apply(plan: InstallPlan) -> Path | None:
    """Write the plan: back up the old file, then replace it atomically; the backup's path."""
    if not plan.changed:
        return None
    # Write through a symlink (dotfile managers) instead of replacing the link itself.
    target = plan.path.resolve() if plan.path.is_symlink() else plan.path
    try:
        current: str | None = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallerError(f"cannot read {target}: {exc}") from exc
    if current != plan.before:
        raise InstallerError(f"{plan.path} changed since the plan was made; run the command again")
    backup: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600
        if current is not None:
            mode = target.stat().st_mode & 0o7777
            backup = _backup_path(target, datetime.now(UTC))
            durable.replace_file(backup, current.encode("utf-8"), mode)
        if plan.remove:
            target.unlink()
            durable.fsync_dir(target.parent)
        else:
            durable.replace_file(target, plan.after.encode("utf-8"), mode)
        _prune_backups(target)
    except OSError as exc:
        raise InstallerError(
            f"cannot write {target}: {exc.strerror or exc}; it was left unchanged"
        ) from exc
    return backup


def _prune_backups(target: Path) -> None:
    """Keep the newest BACKUPS_KEPT backups of `target` (names sort by their UTC time stamp)."""
    backups = sorted(
        target.parent.glob(f"{target.name}{_BACKUP_SUFFIX}*"), key=lambda p: p.stat().st_mtime_ns
    )
    for old in backups[:-BACKUPS_KEPT]:
        old.unlink(missing_ok=True)


def unified_diff(plan: InstallPlan) -> str:
    """The change as a unified diff (empty when nothing changes), for --dry-run."""
    if not plan.changed:
        return ""
    before = (plan.before or "").splitlines(keepends=True)
    after = plan.after.splitlines(keepends=True)
    fromfile = str(plan.path) if plan.before is not None else "/dev/null"
    tofile = "/dev/null" if plan.remove else str(plan.path)
    return "".join(difflib.unified_diff(before, after, fromfile=fromfile, tofile=tofile))
