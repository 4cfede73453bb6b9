"""Integration fixtures: a spool, an ingestor and a session tracker on a fresh database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.transcripts import TranscriptReader
from daemon.workflows import SessionTracker
from tests.conftest import FIXTURES

HOST = "test-host"


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


@pytest.fixture
def copies(tmp_path: Path) -> Path:
    """A writable copy of the fixture transcripts (files are appended to, cut and replaced)."""
    dest = tmp_path / "transcripts"
    shutil.copytree(FIXTURES / "transcripts", dest)
    return dest


def read_transcripts(reader: TranscriptReader, folder: Path) -> None:
    """Register every transcript below `folder` and read them to the end."""
    reader.register(sorted(folder.rglob("*.jsonl")))
    reader.sync()


@pytest.fixture
def all_transcripts_read(sink: PostgresSink, copies: Path, db_url: str) -> str:
    """Every fixture transcript read into the database; its URL."""
    read_transcripts(TranscriptReader(sink, HOST, allowed_roots=[copies]), copies)
    return db_url

