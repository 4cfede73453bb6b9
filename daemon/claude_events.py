"""Which Claude Code hook events `hooks install` registers, by the Claude Code version found.

Every event of docs/design/claude-code.md §5 except the two that must not be hooked; events newer
than the installed `claude` are left out (an older CLI that meets an unknown event name skips the
whole settings file). The version comes from `claude --version`.
"""

from __future__ import annotations

import re
import shutil
import subprocess

CLAUDE_VERSION_TIMEOUT_S = 5
# WorktreeCreate replaces git's worktree creation and fails it on any non-zero exit;
# a logging hook has no business there (docs/design/claude-code.md §5).
EXCLUDED_EVENTS = frozenset({"WorktreeCreate", "WorktreeRemove"})

# Every event of docs/design/claude-code.md §5 except the excluded two, in its table order.
KNOWN_EVENTS: tuple[str, ...] = (
    "SessionStart",
    "Setup",
    "InstructionsLoaded",
    "UserPromptSubmit",
    "UserPromptExpansion",
    "MessageDisplay",
    "PreToolUse",
    "PermissionRequest",
    "PermissionDenied",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "Notification",
    "SubagentStart",
    "SubagentStop",
    "TaskCreated",
    "TaskCompleted",
    "Stop",
    "StopFailure",
    "TeammateIdle",
    "ConfigChange",
    "CwdChanged",
    "DirectoryAdded",
    "FileChanged",
    "PreCompact",
    "PostCompact",
    "Elicitation",
    "ElicitationResult",
    "PreModelSwitch",
    "PostModelSwitch",
    "SessionEnd",
    "PreSkillShellCommand",
)

# Events whose matcher is the tool name: they get `"matcher": "*"`; the others get no matcher.
TOOL_EVENTS = frozenset(
    {
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "PermissionRequest",
        "PermissionDenied",
        "PreSkillShellCommand",
    }
)

# The first Claude Code version known to accept an event name. An older version that meets
# an unknown event name skips the whole settings file, so the table errs on the late side.
# The reference gives no introduction version for any event; what it does say:
#   - PreModelSwitch / PostModelSwitch are marked † (seen in 2.1.330, absent from the docs
#     snapshot of about 2.1.240);
#   - MessageDisplay and PostToolBatch were first observed in the 2.1.330 run; their first
#     release is unknown, so they are treated as 2.1.330 as well.
#   - PreSkillShellCommand is new in 2.1.332 (docs/design/claude-code.md §17); 2.1.331 and older open a
#     dialog at start for a settings file that names it.
# Events not listed are assumed to be known by every version this installer supports.
EVENT_MIN_VERSION: dict[str, tuple[int, int, int]] = {
    "PreModelSwitch": (2, 1, 330),
    "PostModelSwitch": (2, 1, 330),
    "MessageDisplay": (2, 1, 330),
    "PostToolBatch": (2, 1, 330),
    "PreSkillShellCommand": (2, 1, 332),
}
# Without a detected version (no `claude` on PATH, or output we cannot parse) only the events
# every version accepts are installed: one unknown name makes an older CLI reject the whole
# settings file, the user's other hooks included. `hooks install` adds the rest once it can
# run `claude --version`.
BASELINE_EVENTS: tuple[str, ...] = tuple(e for e in KNOWN_EVENTS if e not in EVENT_MIN_VERSION)

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)\.(\d+)")


def parse_claude_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `claude --version` output such as "2.1.330 (Claude Code)"."""
    match = _VERSION_RE.match(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def claude_version() -> str | None:
    """The installed Claude Code version ("2.1.330"), or None if absent or failing."""
    exe = shutil.which("claude")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--version"],
            capture_output=True,
            text=True,
            timeout=CLAUDE_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = parse_claude_version(proc.stdout) if proc.returncode == 0 else None
    return None if version is None else ".".join(map(str, version))


def detect_claude_events(claude_version: str | None) -> tuple[str, ...]:
    """The events of KNOWN_EVENTS that this Claude Code version accepts.

    An unknown or unparsable version gets BASELINE_EVENTS, the ones every version accepts.
    """
    version = None if claude_version is None else parse_claude_version(claude_version)
    if version is None:
        return BASELINE_EVENTS
    return tuple(e for e in KNOWN_EVENTS if version >= EVENT_MIN_VERSION.get(e, (0, 0, 0)))


def describe_detection(claude_version: str | None) -> str:
    """One line for `hooks install`: which Claude Code was found and what that means."""
    events = detect_claude_events(claude_version)
    if claude_version is None:
        left_out = [e for e in KNOWN_EVENTS if e not in events]
        return (
            f"no `claude` on PATH (or `claude --version` failed): installing the {len(events)} "
            f"events every Claude Code version accepts, not {', '.join(left_out)}; run "
            "`session-db hooks install` again where `claude` is on PATH to add them"
        )
    skipped = [e for e in KNOWN_EVENTS if e not in events]
    return f"Claude Code {claude_version} detected: installing {len(events)} events" + (
        f" (not {', '.join(skipped)}: newer than this version)" if skipped else ""
    )
