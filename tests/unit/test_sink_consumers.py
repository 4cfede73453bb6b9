"""SessionTracker and TranscriptReader over the in-memory Sink: what they do with the port's
answers and errors (tests/conformance checks the fake against PostgreSQL)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from daemon.errors import PermanentRowError, TransientDbError
from daemon.messages import Entry, MessageArchive, MessageRow
from daemon.redaction import Redactor
from daemon.sink_port import TranscriptCommit, TranscriptWrite
from daemon.transcripts import TranscriptReader
from daemon.workflows import SessionTracker
from tests.conftest import FIXTURES
from tests.support.fake_sink import FakeSink

HOST = "unit-host"
TRANSCRIPT = next((FIXTURES / "transcripts" / "extras").glob("*.jsonl"))  # 7 responses
DEADLOCK_GUARD_S = 30.0  # how long a commit waits for the reader before the test fails


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


def three_transcripts(tmp_path: Path) -> list[Path]:
    """Three recorded sessions under tmp_path/projects, in the registry's (path) order."""
    paths = []
    for scenario in ("error", "expand", "extras"):
        source = next((FIXTURES / "transcripts" / scenario).glob("*.jsonl"))
        path = tmp_path / "projects" / scenario / source.name
        path.parent.mkdir(parents=True)
        shutil.copy(source, path)
        paths.append(path)
    return sorted(paths, key=str)


class _ReadSpy(MessageArchive):
    """The default archive, noting each transcript it has made rows of (in the reading thread)."""

    def __init__(self) -> None:
        super().__init__(redactor=Redactor())
        self.read: dict[str, threading.Event] = {}

    def rows(self, entries: Sequence[Entry], path: str) -> list[MessageRow]:
        self.read.setdefault(path, threading.Event()).set()
        return super().rows(entries, path)


class _CommitHook(FakeSink):
    """The fake, running `before(n)` at the start of its n-th commit_transcripts (from 1)."""

    def __init__(self, before: Callable[[int], None]) -> None:
        super().__init__(host=HOST)
        self.before = before
        self.commits: list[list[str]] = []  # the files of each commit, in commit order

    def commit_transcripts(self, write: TranscriptWrite) -> TranscriptCommit:
        self.commits.append([o.path for o in write.offsets])
        self.before(len(self.commits))
        return super().commit_transcripts(write)


def test_transcript_reader_commits_a_batch_while_the_next_is_read(tmp_path: Path) -> None:
    """One file per transaction: the commit of the first file waits until the reading thread
    has parsed the second, which can only happen when commits run beside the reading. Batches
    still commit one at a time, in reading order, and every row arrives once."""
    files = three_transcripts(tmp_path)
    spy = _ReadSpy()
    seen_second: list[bool] = []

    def first_waits_for_second(n: int) -> None:
        if n == 1:
            second = spy.read.setdefault(str(files[1]), threading.Event())
            seen_second.append(second.wait(DEADLOCK_GUARD_S))

    sink = _CommitHook(first_waits_for_second)
    reader = TranscriptReader(sink, HOST, txn_max_files=1, archive=spy, allowed_roots=[tmp_path])
    reader.register(files)
    stats = reader.sync()
    assert [True] == seen_second
    assert [[str(p)] for p in files] == sink.commits
    assert [p.stat().st_size for p in files] == [f.byte_offset for f in sink.transcript_files()]
    assert (len(sink.usages), len(sink.messages)) == (stats.inserted, stats.archived)
    assert 0 < stats.inserted


def test_transcript_reader_writer_error_ends_the_pass_and_the_next_reads_the_rest(
    tmp_path: Path,
) -> None:
    """The writer thread fails the second transaction while the reader has read on: the error
    is raised by sync() in the reading thread, no later batch commits, and only the first file's
    offset moved. The next pass reads the other two files, and the rows equal one clean pass."""
    files = three_transcripts(tmp_path)

    def second_fails(n: int) -> None:
        if n == 2:
            raise TransientDbError("server gone")

    sink = _CommitHook(second_fails)
    reader = TranscriptReader(sink, HOST, txn_max_files=1, allowed_roots=[tmp_path])
    reader.register(files)
    with pytest.raises(TransientDbError):
        reader.sync()
    assert [[str(files[0])], [str(files[1])]] == sink.commits
    sizes = [p.stat().st_size for p in files]
    assert [sizes[0], 0, 0] == [f.byte_offset for f in sink.transcript_files()]
    again = reader.sync()
    assert 2 == again.files
    assert sizes == [f.byte_offset for f in sink.transcript_files()]
    clean = FakeSink(host=HOST)
    clean_reader = TranscriptReader(clean, HOST, allowed_roots=[tmp_path])
    clean_reader.register(files)
    clean_reader.sync()
    assert (clean.usages, clean.messages.keys()) == (sink.usages, sink.messages.keys())
