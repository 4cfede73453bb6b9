"""The shipped systemd units pass `systemd-analyze verify` (user unit and per-user system unit)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from daemon.resources import data_path


def verify(
    unit: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd (.ci/bootstrap does)"
    cmd = [tool, "verify", *extra, str(unit)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)


def installed(tmp_path: Path, name: str, exec_start: str) -> Path:
    """The unit as an install would write it: ExecStart pointing at a real session-db."""
    session_db = Path(sys.executable).with_name("session-db")
    text = (data_path("systemd") / name).read_text()
    assert exec_start in text
    unit = tmp_path / name
    unit.write_text(text.replace(exec_start, f"ExecStart={session_db} run"))
    return unit


def test_units_user_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify --user accepts session-db.service without warnings."""
    unit = installed(tmp_path, "session-db.service", "ExecStart=%h/.local/bin/session-db run")
    done = verify(unit, "--user", env={"XDG_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert (0, "") == (done.returncode, done.stderr.strip())


def test_units_system_template_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the hardened session-db@.service template without warnings."""
    unit = installed(tmp_path, "session-db@.service", "ExecStart=/usr/local/bin/session-db run")
    done = verify(unit)
    assert (0, "") == (done.returncode, done.stderr.strip())
