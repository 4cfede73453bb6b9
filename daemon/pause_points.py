"""Fault injection for the crash tests: SESSION_DB_TEST_PAUSE names one point where the daemon
writes a marker file `paused-<point>` (its pid) and then waits to be killed.

The points: pre_commit and post_commit (daemon/batch_commit.py), mid_unlink (daemon/ingest.py,
half the committed files unlinked), in_parse_worker (daemon/parse_pool.py, in a worker process,
once per marker). Unset, every check is one string comparison."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

PAUSE_ENV = "SESSION_DB_TEST_PAUSE"


class PausePoints:
    """The point chosen by SESSION_DB_TEST_PAUSE, and where its marker goes."""

    def __init__(self, marker_dir: Path | None) -> None:
        self.chosen = os.environ.get(PAUSE_ENV) or None
        self._marker_dir = marker_dir

    def hook(self, point: str) -> Callable[[], None] | None:
        """A callable that stops at `point` when it is the chosen one, else None."""
        if self.chosen != point:
            return None
        return lambda: self.stop_at(point)

    def stop_at(self, point: str) -> None:
        """At the chosen point: announce it with the marker file, then wait to be killed."""
        if self.chosen != point or self._marker_dir is None:
            return
        (self._marker_dir / f"paused-{point}").write_text(str(os.getpid()))
        while True:
            time.sleep(3600)
