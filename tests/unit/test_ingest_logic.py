"""The Ingestor's batching, bisection, dedupe and batch deadline, over the in-memory Sink.

Real spool files in a temporary directory; the fake sink stands for PostgreSQL (its contract
is checked against PostgreSQL by tests/conformance), so each test takes milliseconds.
"""

from __future__ import annotations

import json

import orjson
import pytest

from daemon import batch_commit
from daemon.errors import TransientDbError
from daemon.ingest import Ingestor
from daemon.spool import Spool
from tests.support.fake_sink import FakeSink
from tests.support.spoolwriter import write_event

HOST = "unit-host"


@pytest.fixture
def fake() -> FakeSink:
    return FakeSink(host=HOST)


def ingestor(spool: Spool, sink: FakeSink, **kw: float) -> Ingestor:
    return Ingestor(
        spool,
        sink,
        host=HOST,
        batch_max_files=int(kw.pop("batch_max_files", 500)),
        batch_max_bytes=8 << 20,
        foreign_grace_s=0.0,
        **kw,  # type: ignore[arg-type]  # only batch_deadline_s is passed here
    )


def spool_events(spool: Spool, n: int, tool: str = "Read") -> list[str]:
    payload = orjson.dumps({"session_id": "s-1", "tool_name": tool})
    return [
        write_event(spool.root, payload, event="PreToolUse", host=HOST, fsync=False)
        for _ in range(n)
    ]


def test_ingest_batches_bounded_by_file_count(spool: Spool, fake: FakeSink) -> None:
    """Seven files with batch_max_files=3 commit as batches of 3, 3 and 1; all leave new/."""
    spool_events(spool, 7)
    stats = ingestor(spool, fake, batch_max_files=3).drain()
    assert [3, 3, 1] == fake.batches
    assert (3, 7, 7) == (stats.batches, stats.files, stats.inserted)
    assert [] == list(spool.new.iterdir())


def test_ingest_poison_row_bisected_neighbours_commit(spool: Spool, fake: FakeSink) -> None:
    """A row the sink refuses is isolated by bisection and quarantined as db_rejected with its
    SQLSTATE; every other row of its batch commits."""
    fake.refuse_tool_name("poison")
    good = spool_events(spool, 6)
    (poison,) = spool_events(spool, 1, tool="poison")
    good += spool_events(spool, 5)
    stats = ingestor(spool, fake).drain()
    assert (11, 1) == (stats.inserted, stats.quarantined)
    assert [poison] == list(spool.quarantined())
    sidecar = json.loads((spool.quarantine / (poison + ".reason.json")).read_text())
    assert ("db_rejected", "23514") == (sidecar["reason"], sidecar["sqlstate"])
    assert len(good) == len(fake.events)
    assert len(fake.batches) > 2  # the first attempt failed whole, then halves were tried


def test_ingest_replayed_files_count_as_duplicates(spool: Spool, fake: FakeSink) -> None:
    """Files that come back under the same names (a replay after a lost COMMIT) add no rows:
    they count as duplicates and still leave new/."""
    names = spool_events(spool, 4)
    saved = {n: (spool.new / n).read_bytes() for n in names}
    ingestor(spool, fake).drain()
    for name, data in saved.items():
        (spool.new / name).write_bytes(data)
    stats = ingestor(spool, fake).drain()
    assert (0, 4) == (stats.inserted, stats.duplicates)
    assert 4 == len(fake.events)
    assert [] == list(spool.new.iterdir())


def test_ingest_transient_error_leaves_files_for_retry(spool: Spool, fake: FakeSink) -> None:
    """A transient sink error propagates and the batch's files stay in new/ for the next pass,
    which commits them."""
    names = spool_events(spool, 3)
    fake.fail_next(TransientDbError("server gone"))
    with pytest.raises(TransientDbError):
        ingestor(spool, fake).drain()
    assert sorted(names) == sorted(p.name for p in spool.new.iterdir())
    assert 3 == ingestor(spool, fake).drain().inserted


def test_ingest_hanging_batch_cut_at_deadline(
    spool: Spool, fake: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that never answers is aborted once the batch deadline passes: the drain fails
    with a transient error, nothing is unlinked, and the next pass commits the files."""
    monkeypatch.setattr(batch_commit, "WRITER_POLL_S", 0.005)
    names = spool_events(spool, 2)
    fake.hang_next()
    with pytest.raises(TransientDbError):
        ingestor(spool, fake, batch_deadline_s=0.02).drain()
    assert sorted(names) == sorted(p.name for p in spool.new.iterdir())
    assert 2 == ingestor(spool, fake).drain().inserted
