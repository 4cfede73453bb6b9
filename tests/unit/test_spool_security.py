"""The daemon refuses a spool other users could write to."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.spool import Spool


def test_spool_world_writable_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A group/world-writable spool directory stops start-up with a message naming chmod."""
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    spool.new.chmod(0o777)
    with pytest.raises(ConfigError, match=r"chmod -R go-w"):
        spool.ensure()


def test_spool_owned_by_this_user_and_private_is_accepted(tmp_path: Path) -> None:
    """The directories ensure() creates (0700, ours) pass the check."""
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    spool.ensure()
    assert 0o700 == spool.new.stat().st_mode & 0o777
