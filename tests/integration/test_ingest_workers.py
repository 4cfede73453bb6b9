"""Ingest with parse worker processes against a real server: several batches, the next one read
by the workers while the last one commits, give the same rows and quarantine as in-process."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from daemon.ingest import Ingestor
from daemon.parse_pool import POOL_MIN_FILES
from daemon.redaction import Redactor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.integration.conftest import HOST
from tests.support.spoolwriter import write_event

BATCH = POOL_MIN_FILES + 44  # every batch is large enough for the workers


@pytest.mark.parametrize("workers", [0, 2])
def test_ingest_workers_rows_and_quarantine_equal_in_process(
    tmp_path: Path, sink: PostgresSink, db_url: str, workers: int
) -> None:
    """Three batches holding a secret and a file that is not JSON: each good file one row (the
    secret redacted), the bad one quarantined with its reason, new/ empty."""
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    good = {
        write_event(spool.root, b'{"session_id": "w%d", "n": %d}' % (i % 5, i), event="Stop",
                    host=HOST, fsync=False)
        for i in range(BATCH * 3 - 2)
    }  # fmt: skip
    secret = write_event(
        spool.root, b'{"session_id": "w0", "c": "PGPASSWORD=hunter2hunter2"}', event="Stop",
        host=HOST, fsync=False,
    )  # fmt: skip
    bad = write_event(spool.root, b"{nope", event="Stop", host=HOST, fsync=False)
    ingestor = Ingestor(
        spool, sink, host=HOST, batch_max_files=BATCH, batch_max_bytes=1 << 24,
        foreign_grace_s=0.0, redactor=Redactor(), parse_workers=workers,
    )  # fmt: skip
    try:
        stats = ingestor.drain()
    finally:
        ingestor.close()
    assert (len(good) + 1, 1, 3) == (stats.inserted, stats.quarantined, stats.batches)
    with psycopg.connect(db_url) as conn:
        rows: dict[str, str] = dict(
            conn.execute("SELECT event_uid, payload::text FROM agent_logs").fetchall()
        )
    assert good | {secret} == set(rows)
    assert "hunter2" not in rows[secret]
    assert "REDACTED" in rows[secret]
    reason = json.loads((spool.quarantine / (bad + ".reason.json")).read_text())["reason"]
    assert "json_decode" == reason
    assert [] == list(spool.new.iterdir())
