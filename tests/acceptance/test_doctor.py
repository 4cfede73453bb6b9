"""`session-db doctor` names what keeps events from arriving, and passes a good installation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(home: Path, *args: str, spool: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",  # no `claude` here: every known event is expected
        "HOME": str(home),
        "SESSION_DB_SPOOL": str(spool),
        "SESSION_DB_DATA_DIR": str(home / "data"),
        "SESSION_DB_LOG_FORMAT": "json",
    }
    cmd = [sys.executable, "-m", "daemon", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_doctor_good_installation_passes(tmp_path: Path) -> None:
    """After `hooks install`, doctor finds the hook on every event and exits 0."""
    home, spool = tmp_path / "home", tmp_path / "spool"
    home.mkdir()
    assert 0 == run(home, "hooks", "install", spool=spool).returncode
    done = run(home, "doctor", spool=spool)
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "FAIL" not in done.stdout


def test_doctor_finds_spool_mismatch_missing_hook_and_invalid_settings(tmp_path: Path) -> None:
    """A hook writing to another spool, a hook file gone, and an invalid project settings file each FAIL."""
    home, spool = tmp_path / "home", tmp_path / "spool"
    home.mkdir()
    assert 0 == run(home, "hooks", "install", spool=tmp_path / "other-spool").returncode
    mismatch = run(home, "doctor", spool=spool)
    assert 1 == mismatch.returncode
    assert (
        f"the hook writes to {tmp_path / 'other-spool'}, the daemon reads {spool}"
        in mismatch.stdout
    )
    os.unlink(home / "data" / "bin" / "session-db-hook")
    project = tmp_path / "proj"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.local.json").write_text("{ not json")
    broken = run(home, "doctor", "--project", str(project), spool=tmp_path / "other-spool")
    assert 1 == broken.returncode
    assert "is missing or not executable" in broken.stdout
    assert "settings.local.json is not valid JSON" in broken.stdout
