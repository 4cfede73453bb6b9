"""Unit fixtures: no database, no daemon subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon import config
from daemon.worker import Service

UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1


@pytest.fixture
def offline_service(tmp_path: Path) -> Service:
    """A worker with its own spool and state under tmp_path and a database it never reaches
    (its loop logic runs without PostgreSQL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_DB_")}
    env.update(
        SESSION_DB_URL=UNREACHABLE_URL,
        SESSION_DB_SPOOL=str(tmp_path / "spool"),
        SESSION_DB_STATE_DIR=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    return Service(config.load(env))
