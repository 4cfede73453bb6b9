"""Files shipped with session-db: migrations, the hook, the systemd units.

In an installed wheel they live in `daemon/_data/` (see pyproject's force-include);
in a checkout they are the top-level folders beside `daemon/`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def data_path(name: str) -> Path:
    """Absolute path of a shipped file or folder (`alembic`, `alembic.ini`, `hooks`, `systemd`)."""
    packaged = resources.files("daemon") / "_data" / name
    if packaged.is_file() or packaged.is_dir():
        return Path(str(packaged))
    local = _CHECKOUT / name
    if local.exists():
        return local
    raise FileNotFoundError(
        f"{name} is missing from this installation (looked in {packaged} and {local}); reinstall session-db"
    )


def hook_script() -> Path:
    return data_path("hooks") / "session-db-hook"
