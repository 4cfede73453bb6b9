"""SessionTracker and TranscriptReader over the in-memory Sink: what they do with the port's
answers and errors (tests/conformance checks the fake against PostgreSQL)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from daemon.errors import PermanentRowError, TransientDbError
from daemon.transcripts import TranscriptReader
from daemon.workflows import SessionTracker
from tests.conftest import FIXTURES
from tests.support.fake_sink import FakeSink

HOST = "unit-host"
TRANSCRIPT = next((FIXTURES / "transcripts" / "extras").glob("*.jsonl"))  # 7 responses


def write_state(root: Path, status: str) -> Path:
    d = root / "agents" / "sessions" / "wf-1"
    d.mkdir(parents=True, exist_ok=True)
    path = d / "state.json"
    path.write_text(json.dumps({"slug": "wf-1", "status": status, "agents": [{"id": "a"}]}))
    return path


def test_workflow_tracker_applies_each_content_once(tmp_path: Path) -> None:
    """A state.json is applied when its content changes, with the status change reported;
    an unchanged file is not sent to the sink again."""
    fake = FakeSink(host=HOST)
    tracker = SessionTracker(fake, HOST)
    write_state(tmp_path, "plan")
    [first] = tracker.sync([tmp_path])
    assert ("wf-1", None, "plan", 1) == (first.slug, first.phase_from, first.phase_to, first.agents)
    assert [] == tracker.sync([tmp_path])
    write_state(tmp_path, "build")
    [second] = tracker.sync([tmp_path])
    assert ("plan", "build") == (second.phase_from, second.phase_to)


def test_workflow_tracker_refused_content_skipped_transient_raised(tmp_path: Path) -> None:
    """A content the sink refuses is warned about and not retried until it changes; a
    transient error propagates and the same content is applied on the next pass."""
    fake = FakeSink(host=HOST)
    tracker = SessionTracker(fake, HOST)
    write_state(tmp_path, "plan")
    fake.fail_next(PermanentRowError("refused", "23514"))
    assert [] == tracker.sync([tmp_path])
    assert [] == tracker.sync([tmp_path])  # same content: not sent again
    write_state(tmp_path, "build")
    fake.fail_next(TransientDbError("server gone"))
    with pytest.raises(TransientDbError):
        tracker.sync([tmp_path])
    assert ["build"] == [r.phase_to for r in tracker.sync([tmp_path])]


def test_transcript_reader_reads_once_and_again_after_a_lost_commit(tmp_path: Path) -> None:
    """A commit that fails leaves the offset where it was, so the next pass reads the same
    lines again and commits them with the offset; after that a pass finds nothing new."""
    path = tmp_path / "projects" / TRANSCRIPT.name
    path.parent.mkdir()
    shutil.copy(TRANSCRIPT, path)
    fake = FakeSink(host=HOST)
    reader = TranscriptReader(fake, HOST, allowed_roots=[tmp_path])
    assert 1 == reader.register([path])
    fake.fail_next(TransientDbError("server gone"), method="commit_transcripts")
    with pytest.raises(TransientDbError):
        reader.sync()
    assert [0] == [f.byte_offset for f in fake.transcript_files()]
    first = reader.sync()
    assert first.inserted == len(fake.usages) > 0
    assert [path.stat().st_size] == [f.byte_offset for f in fake.transcript_files()]
    again = reader.sync()
    assert (0, 0) == (again.inserted, again.responses)
