"""Installed from a wheel (not a checkout): migrate, hooks install and the unit files work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import psycopg
import pytest

from daemon import migrations
from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow  # builds a wheel and installs it


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the built wheel installed (dependencies borrowed from the test venv)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("session_db-*.whl")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    # Dependencies come from the test environment; its editable `daemon` is not importable this way
    # because a path added by a .pth file does not process that directory's own .pth files.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
         "install", "-q", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return venv


def run(venv: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "session-db"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wheel_ships_migrations_hook_and_units(wheel_venv: Path) -> None:
    """The installed package finds alembic/, the hook and the units inside itself, not in the checkout."""
    code = (
        "import daemon, json; from daemon.resources import data_path, hook_script;"
        "print(json.dumps([daemon.__file__, str(data_path('alembic')), str(hook_script()),"
        " str(data_path('systemd') / 'session-db.service')]))"
    )
    done = subprocess.run(
        [str(wheel_venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    paths = [Path(p) for p in json.loads(done.stdout)]
    assert all(wheel_venv in p.parents for p in paths), paths
    assert all(p.exists() for p in paths)
    assert os.access(paths[2], os.X_OK)


def test_wheel_migrate_and_hooks_install(
    wheel_venv: Path, empty_db_url: str, tmp_path: Path
) -> None:
    """`session-db migrate` and `session-db hooks install` from the wheel; the installed hook delivers."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SESSION_DB_URL": empty_db_url,
        "SESSION_DB_LOG_FORMAT": "json",
    }
    done = run(wheel_venv, "migrate", env=env)
    assert 0 == done.returncode, done.stderr
    assert migrations.head_revision() == migrations.current_revision(empty_db_url)

    done = run(wheel_venv, "hooks", "install", env=env)
    assert 0 == done.returncode, done.stderr
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    hook = Path(command.split()[0])
    assert home / ".local" / "share" / "session-db" / "bin" / "session-db-hook" == hook
    assert "WorktreeCreate" not in settings["hooks"]

    payload = (FIXTURES / "hooks" / "PreToolUse.json").read_bytes()
    subprocess.run(["/bin/sh", "-c", command], input=payload, check=True, env=env, timeout=30)
    spooled = list((home / ".local" / "state" / "session-db" / "spool" / "new").iterdir())
    assert 1 == len(spooled)
    done = run(wheel_venv, "ingest", "--once", env=env)
    assert 0 == done.returncode, done.stderr
    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT event_uid, event_type FROM agent_logs").fetchall()
    assert [(spooled[0].name, "PreToolUse")] == rows
