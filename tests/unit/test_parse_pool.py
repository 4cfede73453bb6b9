"""daemon.parse_pool: worker processes give the same outcome for every file as reading and
parsing it in the daemon's process, in the batch's order."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from daemon.parse_pool import (
    BAD,
    GONE,
    OS_ERROR,
    PAUSE_POINT,
    POOL_MIN_FILES,
    ParseOptions,
    ParsePool,
    examine,
)
from daemon.pause_points import PAUSE_ENV
from daemon.redaction import Redactor
from daemon.spool import Spool, SpoolEntry
from tests.support.spoolwriter import write_event, write_raw

HOST = "pool-host"
WAIT_S = 30.0  # for the workers to reach a state, or for collect() to return


def test_parse_pool_outcomes_equal_in_process_outcomes(spool: Spool) -> None:
    """Good events (one with a secret, one over the field cap), a file that is not JSON, an
    empty foreign file, a planted symlink and a file gone after the scan: the pool's outcome of
    each equals examine() in this process, in scan order."""
    for i in range(POOL_MIN_FILES):
        write_event(spool.root, b'{"session_id": "s%d", "n": %d}' % (i % 7, i), event="Stop",
                    host=HOST, fsync=False)  # fmt: skip
    write_event(spool.root, b'{"k": "sk-ant-api03-' + b"a" * 90 + b'"}', event="X", host=HOST)
    write_event(spool.root, b'{"big": "' + b"y" * 500 + b'"}', event="X", host=HOST)
    write_event(spool.root, b"{not json", event="X", host=HOST)
    write_raw(spool.root, b"", name="foreign-empty")
    os.symlink("/etc/hostname", spool.new / "planted-link")
    entries = spool.scan()
    gone = write_event(spool.root, b"{}", event="X", host=HOST)
    entries.append(SpoolEntry(gone, 2, 0))
    os.unlink(spool.new / gone)
    redactor = Redactor()
    options = ParseOptions(HOST, 128, 1 << 20, redactor.options)
    here = [examine(spool, e, options, redactor) for e in entries]
    pool = ParsePool(spool, options, workers=2)
    try:
        there = pool.examine(entries, lambda: None)
    finally:
        pool.close()
    assert here == there
    kinds = [o[0] for o in here if isinstance(o, tuple)]
    assert sorted([BAD, BAD, OS_ERROR, GONE]) == sorted(kinds)
    assert POOL_MIN_FILES + 2 == len(here) - len(kinds)


def test_parse_pool_close_is_idempotent(spool: Spool) -> None:
    """close() before any use, and twice, does nothing and raises nothing."""
    pool = ParsePool(spool, ParseOptions(HOST, 0, 1 << 20, None), workers=1)
    pool.close()
    pool.close()
    assert 0 == pool.lost


def test_parse_pool_worker_killed_beside_a_paused_one_gives_a_new_pool(
    spool: Spool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker is killed while the other holds a chunk and ignores SIGTERM (paused at the
    crash tests' point): collect() kills the survivor, reads the batch with a new pool and
    returns every outcome, instead of waiting for ever for the broken pool to shut down."""
    monkeypatch.setenv(PAUSE_ENV, PAUSE_POINT)
    for i in range(64):
        write_event(spool.root, b'{"n": %d}' % i, event="Stop", host=HOST, fsync=False)
    entries = spool.scan()
    options = ParseOptions(HOST, 0, 1 << 20, None)
    here = [examine(spool, e, options, None) for e in entries]
    pool = ParsePool(spool, options, workers=2, pause_dir=tmp_path)
    marker = tmp_path / f"paused-{PAUSE_POINT}"
    submitted = pool.submit(entries)
    assert submitted.futures is not None
    futures = submitted.futures
    deadline = time.monotonic() + WAIT_S
    while (
        not (marker.exists() and marker.read_text())
        or sum(f.done() for f in futures) < len(futures) - 1
    ):
        assert time.monotonic() < deadline, "one worker paused, the other done with the rest"
        time.sleep(0.02)
    paused = int(marker.read_text())
    assert pool._executor is not None
    [other] = [pid for pid in pool._executor._processes if pid != paused]
    os.kill(other, signal.SIGKILL)
    got: list[object] = []
    collector = threading.Thread(target=lambda: got.append(pool.collect(submitted, lambda: None)))
    collector.start()
    collector.join(WAIT_S)
    try:
        assert not collector.is_alive(), "collect() still waiting for the broken pool"
        assert [here] == got
        assert 1 == pool.lost
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(paused, signal.SIGKILL)  # without the fix it still sleeps in the pause
        if not collector.is_alive():
            pool.close()
