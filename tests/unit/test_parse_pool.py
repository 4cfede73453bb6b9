"""daemon.parse_pool: worker processes give the same outcome for every file as reading and
parsing it in the daemon's process, in the batch's order."""

from __future__ import annotations

import os

from daemon.parse_pool import BAD, GONE, OS_ERROR, POOL_MIN_FILES, ParseOptions, ParsePool, examine
from daemon.redaction import Redactor
from daemon.spool import Spool, SpoolEntry
from tests.support.spoolwriter import write_event, write_raw

HOST = "pool-host"


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
