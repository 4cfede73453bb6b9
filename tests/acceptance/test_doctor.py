"""`session-db doctor` names what keeps events from arriving, and passes a good installation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.acceptance.conftest import wait_for


def environment(home: Path, spool: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",  # no `claude` here: every known event is expected
        "HOME": str(home),
        "SESSION_DB_SPOOL": str(spool),
        "SESSION_DB_DATA_DIR": str(home / "data"),
        "SESSION_DB_LOG_FORMAT": "json",
    }


def run(home: Path, *args: str, spool: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "daemon", *args]
    return subprocess.run(
        cmd, env=environment(home, spool), capture_output=True, text=True, timeout=60, check=False
    )


def test_doctor_good_installation_passes(tmp_path: Path, db_url: str) -> None:
    """After `hooks install` and with a daemon reading the hook's spool, doctor exits 0."""
    home, spool = tmp_path / "home", tmp_path / "spool"
    home.mkdir()
    assert 0 == run(home, "hooks", "install", spool=spool).returncode
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run"], stdout=subprocess.DEVNULL, stderr=log,
            env={**environment(home, spool), "SESSION_DB_URL": db_url},
        )  # fmt: skip
    try:
        wait_for(lambda: spool.joinpath("new").is_dir(), what="the daemon's spool")
        done = run(home, "doctor", spool=spool)
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert f"session-db run reads {spool} (pid {daemon.pid})" in done.stdout


def test_doctor_finds_no_daemon_and_hooks_at_two_levels(tmp_path: Path) -> None:
    """With no daemon reading the spool, doctor FAILs and says how to start one; our hook in both
    the user and a project settings file is a warning naming the uninstall command."""
    home, spool, project = tmp_path / "home", tmp_path / "spool", tmp_path / "proj"
    home.mkdir()
    project.mkdir()
    assert 0 == run(home, "hooks", "install", spool=spool).returncode
    assert 0 == run(home, "hooks", "install", "--project", str(project), spool=spool).returncode
    done = run(home, "doctor", "--project", str(project), spool=spool)
    assert 1 == done.returncode
    assert f"no `session-db run` on this machine reads {spool}" in done.stdout
    assert "recorded twice" in done.stdout
    assert f"session-db hooks uninstall --project {project}" in done.stdout


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
