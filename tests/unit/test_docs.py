"""The user documentation agrees with the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from daemon import config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DOC = REPO / "docs" / "reference" / "configuration.md"
HOOK_ONLY = {"SESSION_DB_FSYNC"}  # read by the hook script, not by the daemon
README_MAX_LINES = 300


def documented_variables() -> set[str]:
    return set(re.findall(r"^\| `(SESSION_DB_[A-Z0-9_]+)`", CONFIG_DOC.read_text(), re.MULTILINE))


def test_docs_configuration_reference_lists_every_setting() -> None:
    """Every setting of config.OPTIONS has a row in the configuration reference, and every row
    names a real setting (or the hook's own variable)."""
    variables = {opt.env for opt in config.OPTIONS}
    documented = documented_variables()
    assert set() == variables - documented, "settings missing from the reference"
    assert set() == documented - variables - HOOK_ONLY, "reference rows naming no setting"


def test_docs_readme_stays_short_and_links_resolve() -> None:
    """The README stays a short user guide, and every relative link in it and in docs/ points
    at a file that exists."""
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    for doc in [readme, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)} links to {target}"
