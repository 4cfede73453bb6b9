"""The daemon's rooms stay small and on the map: each module can be read in one sitting, and
docs/daemon-modules.md names every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import daemon

ROOT = Path(daemon.__file__).parent
DOCS = ROOT.parent / "docs" / "daemon-modules.md"
MAX_MODULE_LINES = 420  # "about 400 lines" (issue 13), with room for a docstring's growth
CATALOGUE = {"db.py"}  # every SQL statement lives in one place, so that one may be long
ENTRY_POINTS = {"__init__.py", "__main__.py"}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_module_sizes_stay_under_the_limit() -> None:
    """No daemon module but the SQL catalogue is longer than MAX_MODULE_LINES lines."""
    over = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if p.name not in CATALOGUE
        and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert over == {}, "split these modules by what they hold"


def test_module_map_names_every_module() -> None:
    """Every top-level module of daemon/ is named whole, in backticks, in
    docs/daemon-modules.md (`pool.py` is not found inside `parse_pool.py`), and every package
    by its folder (`schema/`, `commands/*`)."""
    named = set(re.findall(r"`([^`]+)`", DOCS.read_text(encoding="utf-8")))
    modules = {p.name for p in ROOT.glob("*.py")} - ENTRY_POINTS
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    missing = sorted(modules - named) + sorted(
        f"{d}/" for d in packages if not any(n.startswith(f"{d}/") for n in named)
    )
    assert missing == []
