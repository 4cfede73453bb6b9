"""Integration fixtures: a spool, an ingestor and a session tracker on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.workflows import SessionTracker

HOST = "test-host"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool")
    s.ensure()
    return s


@pytest.fixture
def sink(db_url: str) -> Iterator[PostgresSink]:
    s = PostgresSink(
        db_url, host=HOST, connect_timeout_s=5, statement_timeout_ms=30_000, lock_timeout_ms=10_000
    )
    yield s
    s.close()


@pytest.fixture
def ingestor(spool: Spool, sink: PostgresSink) -> Ingestor:
    return Ingestor(
        spool, sink, host=HOST, batch_max_files=500, batch_max_bytes=8 << 20, foreign_grace_s=0.0
    )


@pytest.fixture
def tracker(sink: PostgresSink) -> SessionTracker:
    return SessionTracker(sink, HOST)
