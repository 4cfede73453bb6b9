"""`hooks install` / `uninstall`: hook script placement and Claude Code settings edits."""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon import claude_events
from daemon.claude_events import EXCLUDED_EVENTS, KNOWN_EVENTS, detect_claude_events
from daemon.errors import InstallerError
from daemon.installer import (
    BACKUPS_KEPT,
    HOOK_TIMEOUT_S,
    apply,
    hook_command,
    install_hook_script,
    installed_hook_path,
    plan_install,
    plan_uninstall,
    settings_path,
    unified_diff,
)

REPO = Path(__file__).resolve().parents[2]
HOOK_SOURCE = REPO / "hooks" / "session-db-hook"
TOOL_EVENTS = {
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PermissionRequest",
    "PermissionDenied",
    "PreSkillShellCommand",
}
LATE_EVENTS = {"PreModelSwitch", "PostModelSwitch", "MessageDisplay", "PostToolBatch"}

USER_SETTINGS: dict[str, Any] = {
    "model": "sonnet",
    "hooks": {
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [{"type": "command", "command": "~/bin/guard.sh", "timeout": 5}],
            }
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
    },
    "env": {"FOO": "1"},
    "permissions": {"allow": ["Bash(ls:*)"]},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME without $CLAUDE_CONFIG_DIR."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    return home


@pytest.fixture
def hook(home: Path) -> Path:
    """Where the installed hook would live."""
    return installed_hook_path(home / ".local" / "share" / "session-db")


@pytest.fixture
def spool(home: Path) -> Path:
    """The spool directory the handlers point at."""
    return home / ".local" / "state" / "session-db" / "spool"


def write_json(path: Path, data: dict[str, Any]) -> str:
    """Write settings as Claude Code users usually have them (2-space JSON) and return the text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2) + "\n"
    path.write_text(text)
    return text


def our_handlers(data: dict[str, Any]) -> dict[str, list[tuple[str | None, str]]]:
    """event → [(matcher of its group, command)] for every session-db handler."""
    out: dict[str, list[tuple[str | None, str]]] = {}
    for event, groups in data.get("hooks", {}).items():
        for group in groups:
            for handler in group["hooks"]:
                if "session-db-hook" in handler.get("command", ""):
                    out.setdefault(event, []).append((group.get("matcher"), handler["command"]))
    return out


# --- hook script ----------------------------------------------------------------------


def test_installed_hook_path_is_under_bin(tmp_path: Path) -> None:
    """The hook goes to <data_dir>/bin/session-db-hook."""
    assert tmp_path / "bin" / "session-db-hook" == installed_hook_path(tmp_path)


def test_install_hook_script_copies_verbatim(tmp_path: Path) -> None:
    """The installed hook is 0755 and byte for byte the packaged one (#!/bin/sh)."""
    target = install_hook_script(HOOK_SOURCE, tmp_path / "data")

    assert installed_hook_path(tmp_path / "data") == target
    assert 0o755 == stat.S_IMODE(target.stat().st_mode)
    assert HOOK_SOURCE.read_bytes() == target.read_bytes()


def test_install_hook_script_is_idempotent(tmp_path: Path) -> None:
    """A second install leaves the file untouched (same bytes, same mtime)."""
    target = install_hook_script(HOOK_SOURCE, tmp_path)
    first = (target.read_bytes(), target.stat().st_mtime_ns)
    install_hook_script(HOOK_SOURCE, tmp_path)

    assert first == (target.read_bytes(), target.stat().st_mtime_ns)
    assert [target.name] == [p.name for p in target.parent.iterdir()]


def test_install_hook_script_replaces_stale_copy(tmp_path: Path) -> None:
    """An outdated or non-executable hook at the target is replaced by the packaged one."""
    target = installed_hook_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_text("#!/bin/sh\nold\n")
    target.chmod(0o644)
    install_hook_script(HOOK_SOURCE, tmp_path)

    assert HOOK_SOURCE.read_bytes().partition(b"\n")[2] == target.read_bytes().partition(b"\n")[2]
    assert 0o755 == stat.S_IMODE(target.stat().st_mode)


def test_installed_hook_runs_directly_immune_to_bash_env(tmp_path: Path) -> None:
    """Executed through its shebang, the hook ignores $BASH_ENV (no stdout) and spools the event."""
    target = install_hook_script(HOOK_SOURCE, tmp_path / "data")
    noisy = tmp_path / "noisy.sh"
    noisy.write_text("echo FROM-BASH-ENV\n")
    spool = tmp_path / "spool"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BASH_ENV": str(noisy)}

    result = subprocess.run(
        [str(target), "--spool", str(spool), "SessionStart"],
        input=b'{"a": 1}',
        capture_output=True,
        env=env,
        check=False,
    )

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    [spooled] = list((spool / "new").iterdir())
    assert spooled.read_bytes().endswith(b'\n\n{"a": 1}')


# --- Claude Code version and events ------------------------------------------------------


def test_known_events_cover_reference_minus_excluded() -> None:
    """KNOWN_EVENTS lists the 32 events of the reference (§5 and §17), without the worktree events."""
    named = {
        "PreModelSwitch", "PostModelSwitch", "MessageDisplay", "PostToolBatch",
        "UserPromptExpansion", "Setup", "StopFailure", "PermissionDenied", "TeammateIdle",
        "Elicitation", "ElicitationResult", "FileChanged", "DirectoryAdded", "CwdChanged",
        "ConfigChange", "TaskCreated", "TaskCompleted",
        "Notification", "InstructionsLoaded", "SessionStart", "SessionEnd", "UserPromptSubmit",
        "PreToolUse", "PermissionRequest", "PostToolUse", "PostToolUseFailure", "SubagentStart",
        "SubagentStop", "Stop", "PreCompact", "PostCompact", "PreSkillShellCommand",
    }  # fmt: skip
    assert 32 == len(KNOWN_EVENTS)
    assert named == set(KNOWN_EVENTS)
    assert set() == EXCLUDED_EVENTS & set(KNOWN_EVENTS)


def test_known_events_match_fixture_capture() -> None:
    """Every event the 2.1.330 capture recorded is in KNOWN_EVENTS."""
    fixtures = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks"
    seen = {p.stem.split("__")[0] for p in fixtures.glob("*.json")}
    assert set() == seen - set(KNOWN_EVENTS)


@pytest.mark.parametrize(
    "version", ["2.1.332", "2.1.332 (Claude Code)", "2.1.334", "2.2.0", "3.0.0"]
)
def test_detect_claude_events_2_1_332_or_newer_gets_all(version: str) -> None:
    """2.1.332 or newer: every known event, PreSkillShellCommand included."""
    assert KNOWN_EVENTS == detect_claude_events(version)
    assert "PreSkillShellCommand" in detect_claude_events(version)


@pytest.mark.parametrize("version", ["2.1.330", "2.1.330 (Claude Code)", "2.1.331"])
def test_detect_claude_events_2_1_330_and_331_leave_out_pre_skill_shell_command(
    version: str,
) -> None:
    """2.1.330 and 2.1.331 (which open a dialog for it): every event but PreSkillShellCommand."""
    assert tuple(e for e in KNOWN_EVENTS if e != "PreSkillShellCommand") == detect_claude_events(
        version
    )


@pytest.mark.parametrize("version", ["2.1.329", "2.1.240 (Claude Code)", "1.0.100"])
def test_detect_claude_events_older_drops_late_events(version: str) -> None:
    """Before 2.1.330 the events first seen in 2.1.330 or later are left out, the rest kept in order."""
    assert tuple(
        e for e in KNOWN_EVENTS if e not in LATE_EVENTS | {"PreSkillShellCommand"}
    ) == detect_claude_events(version)


@pytest.mark.parametrize("version", [None, "nonsense", ""])
def test_detect_claude_events_unknown_version_gets_only_events_every_version_accepts(
    version: str | None,
) -> None:
    """No `claude` (or an unparsable version): only the events the oldest version accepts, so no
    version can reject the file; the same set as for the oldest version."""
    baseline = detect_claude_events(version)
    assert claude_events.BASELINE_EVENTS == baseline
    assert set() == (LATE_EVENTS | {"PreSkillShellCommand"}) & set(baseline)
    assert detect_claude_events("1.0.0") == baseline
    assert 27 == len(baseline)


@pytest.mark.parametrize(
    ("version", "said"),
    [
        ("2.1.332", "Claude Code 2.1.332 detected: installing 32 events"),
        (
            "2.1.330",
            "Claude Code 2.1.330 detected: installing 31 events (not PreSkillShellCommand: newer"
            " than this version)",
        ),
        (None, "no `claude` on PATH (or `claude --version` failed): installing the 27 events"),
    ],
)
def test_describe_detection_names_the_version_and_what_is_installed(
    version: str | None, said: str
) -> None:
    """The line `hooks install` prints names the detected version, or says none was found."""
    assert claude_events.describe_detection(version).startswith(said)


def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Put a `claude` script with `body` first on PATH."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    exe = bin_dir / "claude"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.mark.parametrize(
    ("claude", "said", "beyond_baseline"),
    [
        (
            'echo "2.1.332 (Claude Code)"',
            "Claude Code 2.1.332 detected",
            LATE_EVENTS | {"PreSkillShellCommand"},
        ),
        ('echo "2.1.330 (Claude Code)"', "Claude Code 2.1.330 detected", LATE_EVENTS),
        (None, "no `claude` on PATH", set()),
    ],
)
def test_hooks_install_prints_detected_version_and_installs_its_events(
    tmp_path: Path, home: Path, claude: str | None, said: str, beyond_baseline: set[str]
) -> None:
    """`session-db hooks install` (the real command) says which Claude Code it found and writes
    exactly the events that version accepts, keeping the user's own hooks."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    if claude is not None:
        (bin_dir / "claude").write_text(f"#!/bin/sh\n{claude}\n")
        (bin_dir / "claude").chmod(0o755)
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SESSION_DB_DATA_DIR": str(tmp_path / "data"),
        "SESSION_DB_SPOOL": str(tmp_path / "spool"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "hooks", "install"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert done.stdout.startswith(said), done.stdout
    data = json.loads(path.read_text())
    assert set(claude_events.BASELINE_EVENTS) | beyond_baseline == set(our_handlers(data))
    assert USER_SETTINGS["hooks"]["Stop"] == [
        g for g in data["hooks"]["Stop"] if "session-db-hook" not in json.dumps(g)
    ]


def test_claude_version_parses_cli_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`claude --version` printing "2.1.330 (Claude Code)" gives "2.1.330"."""
    fake_claude(tmp_path, monkeypatch, 'echo "2.1.330 (Claude Code)"')
    assert "2.1.330" == claude_events.claude_version()


@pytest.mark.parametrize("body", ["echo 2.1.330; exit 1", "echo 'no version here'"])
def test_claude_version_failing_cli_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """A failing `claude` or one without a version in its output gives None."""
    fake_claude(tmp_path, monkeypatch, body)
    assert None is claude_events.claude_version()


def test_claude_version_absent_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `claude` on PATH the version is None."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert None is claude_events.claude_version()


def test_claude_version_hanging_cli_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `claude` that hangs is given up on after the timeout: None."""
    fake_claude(tmp_path, monkeypatch, "exec sleep 30")
    monkeypatch.setattr(claude_events, "CLAUDE_VERSION_TIMEOUT_S", 0.3)
    assert None is claude_events.claude_version()


# --- settings paths and commands --------------------------------------------------------


def test_settings_path_user_project_and_config_dir(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """User level: ~/.claude/settings.json or $CLAUDE_CONFIG_DIR; project: settings.local.json."""
    project = tmp_path / "proj"
    assert home / ".claude" / "settings.json" == settings_path(home, None)
    assert project / ".claude" / "settings.local.json" == settings_path(home, project)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert tmp_path / "cfg" / "settings.json" == settings_path(home, None)
    assert project / ".claude" / "settings.local.json" == settings_path(home, project)


def test_hook_command_quotes_paths_with_spaces(tmp_path: Path) -> None:
    """The command is shell-quoted: splitting it gives back hook, --spool, spool, event."""
    hook = tmp_path / "my dir" / "session-db-hook"
    spool = tmp_path / "it's" / "spool"
    command = hook_command(hook, spool, "PreToolUse")
    assert [str(hook), "--spool", str(spool), "PreToolUse"] == shlex.split(command)


# --- plan_install / apply ----------------------------------------------------------------


def test_install_fresh_file_adds_one_group_per_event(home: Path, hook: Path, spool: Path) -> None:
    """A missing settings file gets one group per event: matcher "*" only on tool events."""
    path = settings_path(home, None)
    plan = plan_install(path, hook, spool, KNOWN_EVENTS, None)
    assert (None, True, []) == (plan.before, plan.changed, plan.warnings)
    assert not path.exists()

    assert None is apply(plan)
    data = json.loads(path.read_text())
    assert list(KNOWN_EVENTS) == list(data["hooks"])
    for event in KNOWN_EVENTS:
        handler = {
            "type": "command",
            "command": hook_command(hook, spool, event),
            "timeout": HOOK_TIMEOUT_S,
        }
        expected = (
            {"matcher": "*", "hooks": [handler]} if event in TOOL_EVENTS else {"hooks": [handler]}
        )
        assert [expected] == data["hooks"][event]
    assert plan.after == path.read_text()


def test_install_keeps_user_hooks_and_keys_in_order(home: Path, hook: Path, spool: Path) -> None:
    """Existing hooks and every other key stay as they were, in their order; ours are appended."""
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))
    data = json.loads(path.read_text())

    assert list(USER_SETTINGS) == list(data)
    assert {k: v for k, v in USER_SETTINGS.items() if k != "hooks"} == {
        k: v for k, v in data.items() if k != "hooks"
    }
    assert USER_SETTINGS["hooks"]["PreToolUse"][0] == data["hooks"]["PreToolUse"][0]
    assert USER_SETTINGS["hooks"]["Stop"][0] == data["hooks"]["Stop"][0]
    assert ["PreToolUse", "Stop"] == list(data["hooks"])[:2]
    assert dict.fromkeys(KNOWN_EVENTS, 1) == {e: len(h) for e, h in our_handlers(data).items()}


def test_install_twice_changes_nothing(home: Path, hook: Path, spool: Path) -> None:
    """A second install plans no change and apply leaves the file and directory alone."""
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))
    text, mtime = path.read_text(), path.stat().st_mtime_ns
    entries = sorted(p.name for p in path.parent.iterdir())

    plan = plan_install(path, hook, spool, KNOWN_EVENTS, None)

    assert (False, text, text) == (plan.changed, plan.before, plan.after)
    assert None is apply(plan)
    assert (text, mtime) == (path.read_text(), path.stat().st_mtime_ns)
    assert entries == sorted(p.name for p in path.parent.iterdir())
    assert "" == unified_diff(plan)


def test_install_new_spool_replaces_our_handler(
    home: Path, hook: Path, spool: Path, tmp_path: Path
) -> None:
    """Re-installing with another spool rewrites our handler in place instead of adding one."""
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))
    first = json.loads(path.read_text())
    new_spool = tmp_path / "elsewhere"

    apply(plan_install(path, hook, new_spool, KNOWN_EVENTS, None))
    data = json.loads(path.read_text())

    assert {
        e: [("*" if e in TOOL_EVENTS else None, hook_command(hook, new_spool, e))]
        for e in KNOWN_EVENTS
    } == our_handlers(data)
    assert list(first["hooks"]) == list(data["hooks"])
    assert [len(g) for g in first["hooks"].values()] == [len(g) for g in data["hooks"].values()]


def test_install_moves_our_handler_out_of_a_shared_group(
    home: Path, hook: Path, spool: Path
) -> None:
    """Our handler found inside a user's "Bash"-only group is moved to its own "*" group."""
    path = settings_path(home, None)
    user_handler = {"type": "command", "command": "guard.sh"}
    old_ours = {"type": "command", "command": f"{hook} --spool /old PreToolUse"}
    write_json(
        path, {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [user_handler, old_ours]}]}}
    )

    apply(plan_install(path, hook, spool, ["PreToolUse"], None))

    handler = {
        "type": "command",
        "command": hook_command(hook, spool, "PreToolUse"),
        "timeout": HOOK_TIMEOUT_S,
    }
    assert {
        "hooks": {
            "PreToolUse": [
                {"matcher": "Bash", "hooks": [user_handler]},
                {"matcher": "*", "hooks": [handler]},
            ]
        }
    } == json.loads(path.read_text())


def test_install_fewer_events_removes_ours_from_the_rest(
    home: Path, hook: Path, spool: Path
) -> None:
    """Installing for an older Claude Code removes our handlers from events it would not know."""
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))
    older = detect_claude_events("2.1.200")

    apply(plan_install(path, hook, spool, older, None))
    data = json.loads(path.read_text())

    assert set(older) == set(our_handlers(data))
    assert set() == LATE_EVENTS & set(data["hooks"])


def test_install_never_adds_worktree_events(home: Path, hook: Path, spool: Path) -> None:
    """WorktreeCreate/WorktreeRemove are refused with a warning, the other events installed."""
    path = settings_path(home, None)
    plan = plan_install(path, hook, spool, ["Stop", "WorktreeCreate", "WorktreeRemove"], None)
    apply(plan)

    assert ["Stop"] == list(json.loads(path.read_text())["hooks"])
    assert 1 == len(plan.warnings)
    assert "WorktreeCreate" in plan.warnings[0]


def test_install_unknown_event_is_refused(home: Path, hook: Path, spool: Path) -> None:
    """An event name Claude Code does not know is refused: it would void the whole file."""
    with pytest.raises(InstallerError, match="PreToolUze"):
        plan_install(settings_path(home, None), hook, spool, ["Stop", "PreToolUze"], None)


@pytest.mark.parametrize(
    "content", ["{ not json", '{"hooks": {}, "hooks": {}}', "[1, 2]", '{"hooks": []}']
)
def test_invalid_settings_refused_and_left_unchanged(
    home: Path, hook: Path, spool: Path, content: str
) -> None:
    """Invalid JSON, duplicate keys or a wrong shape: InstallerError naming the file, no write."""
    path = settings_path(home, None)
    path.parent.mkdir(parents=True)
    path.write_text(content)

    with pytest.raises(InstallerError, match=re.escape(str(path))):
        plan_install(path, hook, spool, KNOWN_EVENTS, None)
    with pytest.raises(InstallerError, match=re.escape(str(path))):
        plan_uninstall(path)
    assert content == path.read_text()
    assert [path.name] == [p.name for p in path.parent.iterdir()]


def test_install_error_message_says_how_to_fix(home: Path, hook: Path, spool: Path) -> None:
    """The invalid-JSON error tells the user to fix or remove the file."""
    path = settings_path(home, None)
    path.parent.mkdir(parents=True)
    path.write_text("{,}")
    with pytest.raises(InstallerError, match="Fix or remove it"):
        plan_install(path, hook, spool, KNOWN_EVENTS, None)


def test_apply_backs_up_and_keeps_mode(home: Path, hook: Path, spool: Path) -> None:
    """apply saves the old text as settings.json.bak-<UTC stamp> and keeps the file's mode."""
    path = settings_path(home, None)
    old_text = write_json(path, USER_SETTINGS)
    path.chmod(0o640)

    backup = apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))

    assert backup is not None
    assert re.fullmatch(r"settings\.json\.bak-\d{8}T\d{6}Z", backup.name), backup.name
    assert path.parent == backup.parent
    assert old_text == backup.read_text()
    assert 0o640 == stat.S_IMODE(path.stat().st_mode)
    assert {path.name, backup.name} == {p.name for p in path.parent.iterdir()}


def test_apply_twice_in_one_second_keeps_both_backups(
    home: Path, hook: Path, spool: Path, tmp_path: Path
) -> None:
    """Two changes within the same second never overwrite the first backup."""
    path = settings_path(home, None)
    original = write_json(path, USER_SETTINGS)
    first = apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))
    between = path.read_text()
    second = apply(plan_install(path, hook, tmp_path / "other", KNOWN_EVENTS, None))

    assert first is not None
    assert second is not None
    assert (original, between) == (first.read_text(), second.read_text())


def test_apply_refuses_when_file_changed_since_plan(home: Path, hook: Path, spool: Path) -> None:
    """A file edited between plan and apply is not overwritten."""
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    plan = plan_install(path, hook, spool, KNOWN_EVENTS, None)
    path.write_text('{"model": "opus"}\n')

    with pytest.raises(InstallerError, match="changed since"):
        apply(plan)
    assert '{"model": "opus"}\n' == path.read_text()


def test_apply_writes_through_symlink(home: Path, hook: Path, spool: Path, tmp_path: Path) -> None:
    """A symlinked settings file (dotfiles) stays a symlink; its target gets the change."""
    real = tmp_path / "dotfiles" / "settings.json"
    write_json(real, USER_SETTINGS)
    path = settings_path(home, None)
    path.parent.mkdir(parents=True)
    path.symlink_to(real)

    apply(plan_install(path, hook, spool, ["Stop"], None))

    assert path.is_symlink()
    assert {"Stop": [(None, hook_command(hook, spool, "Stop"))]} == our_handlers(
        json.loads(real.read_text())
    )


def test_install_keeps_file_indentation(home: Path, hook: Path, spool: Path) -> None:
    """A file indented with 4 spaces is rewritten with 4 spaces."""
    path = settings_path(home, None)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(USER_SETTINGS, indent=4) + "\n")

    plan = plan_install(path, hook, spool, ["Stop"], None)

    assert json.dumps(json.loads(plan.after), indent=4) + "\n" == plan.after


def test_dry_run_diff_shows_change_and_writes_nothing(home: Path, hook: Path, spool: Path) -> None:
    """unified_diff names the file, adds our command lines, and planning writes nothing."""
    path = settings_path(home, None)
    before = write_json(path, USER_SETTINGS)

    plan = plan_install(path, hook, spool, ["SessionEnd"], None)
    diff = unified_diff(plan)

    assert before == path.read_text()
    assert diff.startswith(f"--- {path}\n+++ {path}\n")
    added = [
        line for line in diff.splitlines() if line.startswith("+") and "session-db-hook" in line
    ]
    assert 1 == len(added)
    assert json.dumps(hook_command(hook, spool, "SessionEnd")) in added[0]
    assert [] == [
        line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")
    ]


def test_dry_run_diff_of_new_file_is_from_dev_null(home: Path, hook: Path, spool: Path) -> None:
    """For a file that does not exist yet the diff starts from /dev/null."""
    path = settings_path(home, None)
    assert unified_diff(plan_install(path, hook, spool, ["Stop"], None)).startswith(
        f"--- /dev/null\n+++ {path}\n"
    )


def test_install_warns_when_other_level_has_our_hook(
    home: Path, hook: Path, spool: Path, tmp_path: Path
) -> None:
    """If the other settings level already runs session-db-hook, the plan warns of duplicates."""
    user = settings_path(home, None)
    apply(plan_install(user, hook, spool, KNOWN_EVENTS, None))
    project_file = settings_path(home, tmp_path / "proj")

    plan = plan_install(project_file, hook, spool, KNOWN_EVENTS, user)

    assert 1 == len(plan.warnings)
    assert "events would be recorded twice" in plan.warnings[0]
    assert str(user) in plan.warnings[0]


def test_install_no_warning_when_other_level_is_clean(
    home: Path, hook: Path, spool: Path, tmp_path: Path
) -> None:
    """Another level without our hook, or missing, gives no warning."""
    user = settings_path(home, None)
    write_json(user, USER_SETTINGS)
    project_file = settings_path(home, tmp_path / "proj")

    assert [] == plan_install(project_file, hook, spool, KNOWN_EVENTS, user).warnings
    assert (
        [] == plan_install(project_file, hook, spool, KNOWN_EVENTS, tmp_path / "none.json").warnings
    )


def test_install_warns_when_hooks_are_disabled(home: Path, hook: Path, spool: Path) -> None:
    """ "disableAllHooks": true is reported, since nothing would be recorded."""
    path = settings_path(home, None)
    write_json(path, {"disableAllHooks": True})
    warnings = plan_install(path, hook, spool, ["Stop"], None).warnings
    assert 1 == len(warnings)
    assert "disableAllHooks" in warnings[0]


# --- plan_uninstall -----------------------------------------------------------------------


def test_uninstall_restores_the_original_file(home: Path, hook: Path, spool: Path) -> None:
    """Install then uninstall gives back the original text, user hooks included."""
    path = settings_path(home, None)
    original = write_json(path, USER_SETTINGS)
    apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))

    plan = plan_uninstall(path)
    apply(plan)

    assert (True, original) == (plan.changed, path.read_text())


def test_uninstall_of_file_created_by_install_removes_the_file(
    home: Path, hook: Path, spool: Path
) -> None:
    """A settings file that only held our hooks is deleted (a backup stays), not left as {}."""
    path = settings_path(home, None)
    apply(plan_install(path, hook, spool, KNOWN_EVENTS, None))
    plan = plan_uninstall(path, hook)
    assert plan.remove
    assert "+++ /dev/null" in unified_diff(plan)
    backup = apply(plan)
    assert not path.exists()
    assert backup is not None
    assert "session-db-hook" in backup.read_text()


def test_uninstall_keeps_a_file_that_was_empty_before_install(home: Path) -> None:
    """A user's own `{}` file without our hooks is left alone."""
    path = settings_path(home, None)
    write_json(path, {})
    assert not plan_uninstall(path).changed
    assert path.exists()


def test_apply_keeps_only_the_newest_backups(
    home: Path, hook: Path, spool: Path, tmp_path: Path
) -> None:
    """However often the hook is installed, at most BACKUPS_KEPT backups of a file remain,
    the newest ones."""
    path = settings_path(home, None)
    write_json(path, USER_SETTINGS)
    made = []
    for i in range(BACKUPS_KEPT + 3):
        backup = apply(plan_install(path, hook, tmp_path / f"spool-{i}", KNOWN_EVENTS, None))
        assert backup is not None
        made.append(backup.name)
    left = sorted(p.name for p in path.parent.glob("settings.json.bak-*"))
    assert sorted(made[-BACKUPS_KEPT:]) == left


def test_uninstall_removes_only_ours_from_shared_groups(home: Path) -> None:
    """A shared group keeps the user's handler; groups and events left empty by us are dropped."""
    path = settings_path(home, None)
    user_handler = {"type": "command", "command": "guard.sh"}
    ours = {"type": "command", "command": "/x/bin/session-db-hook --spool /s PreToolUse"}
    write_json(
        path,
        {
            "hooks": {
                "PreToolUse": [
                    {"matcher": "Bash", "hooks": [user_handler, ours]},
                    {"matcher": "*", "hooks": [ours]},
                ],
                "Stop": [{"hooks": [ours]}],
                "Notification": [],
            }
        },
    )

    apply(plan_uninstall(path))

    assert {
        "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [user_handler]}], "Notification": []}
    } == json.loads(path.read_text())


def test_uninstall_without_our_hooks_or_file_changes_nothing(home: Path) -> None:
    """Nothing of ours (or no file at all): no change, nothing written."""
    path = settings_path(home, None)
    missing = plan_uninstall(path)
    assert (False, None) == (missing.changed, missing.before)
    assert None is apply(missing)
    assert not path.exists()

    text = write_json(path, USER_SETTINGS)
    plan = plan_uninstall(path)
    assert (False, text) == (plan.changed, plan.after)


def test_install_plan_is_frozen(home: Path, hook: Path, spool: Path) -> None:
    """An InstallPlan cannot be altered after planning."""
    plan = plan_install(settings_path(home, None), hook, spool, ["Stop"], None)
    with pytest.raises(AttributeError):
        plan.changed = False  # type: ignore[misc]
