"""`session-db service install`: a verifiable unit with this installation's path; the URL only in a
0600 environment file."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path


def test_service_install_user_unit(tmp_path: Path) -> None:
    """The user unit points at this session-db, verifies, and keeps the password out of the unit text."""
    home = tmp_path / "home"
    home.mkdir()
    url = "postgresql://writer:s3cret-pw@db.example:5432/sessions?sslmode=require"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "SESSION_DB_URL": url,
        "SESSION_DB_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "service", "install"], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    unit = home / ".config" / "systemd" / "user" / "session-db.service"
    env_file = home / ".config" / "session-db" / "env"
    text = unit.read_text()
    assert f"ExecStart={Path(sys.executable).with_name('session-db')} run" in text
    assert "s3cret-pw" not in text
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert f"SESSION_DB_URL={url}" in env_file.read_text()
    assert 0o600 == stat.S_IMODE(env_file.stat().st_mode)
    assert "systemctl --user enable --now session-db" in done.stdout
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd (.ci/bootstrap does)"
    verify = subprocess.run(
        [tool, "verify", "--user", str(unit)], env={"XDG_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (0, "") == (verify.returncode, verify.stderr.strip())


def test_service_install_unit_uses_the_hooks_spool_under_xdg_state_home(tmp_path: Path) -> None:
    """With XDG_STATE_HOME set in the installing shell, the unit pins the same spool that
    `hooks install` bakes into the hook command, and --dry-run names the systemctl commands."""
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "xdg-state"
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_STATE_HOME": str(state),
           "SESSION_DB_LOG_FORMAT": "json"}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", *args], env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    dry = run("service", "install", "--dry-run")
    assert 0 == dry.returncode, dry.stderr
    spool = state / "session-db" / "spool"
    assert f'Environment="SESSION_DB_SPOOL={spool}"' in dry.stdout
    assert "systemctl --user enable --now session-db" in dry.stdout
    assert not (home / ".config" / "systemd").exists()  # a dry run writes nothing
    hooks = run("hooks", "install", "--dry-run")
    assert 0 == hooks.returncode, hooks.stderr
    assert f"--spool {spool} " in hooks.stdout
