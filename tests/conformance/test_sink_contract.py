"""The Sink port's contract, checked identically on the in-memory fake and on PostgresSink.

Each test runs twice (`sink` is parametrized): what the unit tests learn from the fake holds
on PostgreSQL because these tests hold on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from daemon.errors import PermanentRowError
from daemon.messages import MessageRow
from daemon.sink import PostgresSink
from daemon.sink_port import FileOffset, Sink, StateAgent, TranscriptWrite, WorkflowState
from daemon.transcript_lines import Usage
from tests.support.events import hook_event
from tests.support.fake_sink import FakeSink

HOST = "conformance-host"


@pytest.fixture(params=["fake", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[Sink, Callable[[str], None]]]:
    """(sink, refuse): `refuse(tool)` makes the store reject rows calling that tool, as a
    CHECK constraint does on PostgreSQL."""
    if request.param == "fake":
        fake = FakeSink(host=HOST)
        yield fake, fake.refuse_tool_name
        return
    url: str = request.getfixturevalue("db_url")

    def refuse(tool: str) -> None:
        with psycopg.connect(url) as conn:
            conn.execute(
                "ALTER TABLE agent_logs ADD CONSTRAINT conformance_refused"
                f" CHECK (tool_name IS DISTINCT FROM '{tool}')"
            )

    sink = PostgresSink(
        url, host=HOST, connect_timeout_s=5, statement_timeout_ms=30_000, lock_timeout_ms=10_000
    )
    yield sink, refuse
    sink.close()


@pytest.fixture
def sink(backend: tuple[Sink, Callable[[str], None]]) -> Sink:
    return backend[0]


def usage(message_id: str, *, output_tokens: int = 10, session: str = "s-1") -> Usage:
    return Usage(
        message_id=message_id, request_id="req-" + message_id, claude_session_id=session,
        claude_agent_id=None, prompt_id=None, model="claude-sonnet-4-5", input_tokens=1,
        output_tokens=output_tokens, cache_write_5m_tokens=0, cache_write_1h_tokens=0,
        cache_read_tokens=0, web_search_requests=0, web_fetch_requests=0, speed=None,
        service_tier=None, inference_geo=None, occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        is_sidechain=False, transcript_path="/t/s-1.jsonl",
    )  # fmt: skip


def message(uuid: str, session: str = "s-1") -> MessageRow:
    return MessageRow(
        uuid=uuid, parent_uuid=None, claude_session_id=session, claude_agent_id=None,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC), role="user", entry_type="user",
        model=None, cwd=None, git_branch=None, prompt_id=None, message_id=None,
        tool_use_id=None, tool_name=None, spawned_agent_id=None, is_sidechain=False,
        content='"hello"', text="hello", content_bytes=7, content_sha256=None, transforms=None,
        transcript_path="/t/s-1.jsonl",
    )  # fmt: skip


def workflow(sha: str, status: str | None, agents: tuple[StateAgent, ...] = ()) -> WorkflowState:
    return WorkflowState(
        slug="wf-1", sha256=sha, state_path="/p/agents/sessions/wf-1/state.json",
        mtime_ns=1_767_225_600_000_000_000, title="t", status=status, session_type=None,
        working_dir=None, total_cost=None, state_json="{}", created_at=None, completed_at=None,
        agents=agents,
    )  # fmt: skip


def state_agent(agent_id: uuid.UUID, sdk_session_id: str | None) -> StateAgent:
    return StateAgent(
        id=agent_id, agent_type="builder", sdk_session_id=sdk_session_id, model=None,
        model_alias=None, status="pending", checkpoint_id=None, cost_usd=None, started_at=None,
        completed_at=None,
    )  # fmt: skip


def offset(path: str, at: int) -> FileOffset:
    return FileOffset(path, at, dev=1, ino=2, head_sha256="h", prompt_id=None, lines=1)


def test_sink_write_events_repeat_counts_as_duplicates(sink: Sink) -> None:
    """A batch written twice inserts its rows once: the second write counts them as duplicates."""
    events = [hook_event(HOST) for _ in range(5)]
    first = sink.write_events(events)
    second = sink.write_events(events)
    assert (5, 0) == (first.inserted, first.duplicates)
    assert (0, 5) == (second.inserted, second.duplicates)


def test_sink_write_events_overlap_inserts_only_new(sink: Sink) -> None:
    """Dedupe is per row (event_uid, occurred_at), not per batch: an overlapping batch adds
    only its new rows."""
    events = [hook_event(HOST) for _ in range(6)]
    sink.write_events(events[:4])
    result = sink.write_events(events[2:])
    assert (2, 2) == (result.inserted, result.duplicates)


def test_sink_refused_row_fails_the_whole_batch(
    backend: tuple[Sink, Callable[[str], None]],
) -> None:
    """A row the store refuses raises PermanentRowError and nothing of its batch is stored."""
    sink, refuse = backend
    refuse("poison")
    good = [hook_event(HOST) for _ in range(3)]
    with pytest.raises(PermanentRowError):
        sink.write_events([*good[:2], hook_event(HOST, tool="poison"), good[2]])
    assert 3 == sink.write_events(good).inserted


def test_sink_before_commit_runs_once_before_the_rows_are_visible(sink: Sink) -> None:
    """before_commit runs once per batch; a failure there stores nothing (the batch rolls back)."""
    events = [hook_event(HOST) for _ in range(2)]
    calls: list[int] = []

    def fail() -> None:
        calls.append(1)
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        sink.write_events(events, before_commit=fail)
    assert [1] == calls
    assert 2 == sink.write_events(events).inserted


def test_sink_abort_without_a_write_is_harmless(sink: Sink) -> None:
    """abort() with no write in flight changes nothing: the next write goes through."""
    sink.abort()
    assert 1 == sink.write_events([hook_event(HOST)]).inserted


def test_sink_workflow_state_applied_once_per_content(sink: Sink) -> None:
    """One state.json content (sha256) is applied once; a new content with a new status
    reports the change from the stored status, with the same session id."""
    first = sink.apply_workflow_state(workflow("a" * 64, "plan"))
    assert first is not None
    assert (None, "plan", True) == (first.old_status, first.new_status, first.changed)
    assert sink.apply_workflow_state(workflow("a" * 64, "plan")) is None
    second = sink.apply_workflow_state(workflow("b" * 64, "build"))
    assert second is not None
    assert ("plan", "build", True) == (
        second.old_status,
        second.new_status,
        second.changed,
    )
    assert first.session_id == second.session_id


def test_sink_workflow_state_unknown_status_refused(sink: Sink) -> None:
    """A status outside schema.SESSION_STATUSES is refused as a permanent error (the column's
    CHECK), and nothing is stored: the same content can then be applied with a valid status."""
    with pytest.raises(PermanentRowError):
        sink.apply_workflow_state(workflow("d" * 64, "executing"))
    applied = sink.apply_workflow_state(workflow("d" * 64, "plan"))
    assert applied is not None
    assert (None, "plan") == (applied.old_status, applied.new_status)


def test_sink_workflow_state_same_status_is_no_change(sink: Sink) -> None:
    """A new content without a status keeps the stored one and reports no status change."""
    sink.apply_workflow_state(workflow("a" * 64, "plan"))
    applied = sink.apply_workflow_state(workflow("c" * 64, None))
    assert applied is not None
    assert ("plan", False) == (applied.new_status, applied.changed)


def test_sink_workflow_state_agent_may_change_its_claude_session(sink: Sink) -> None:
    """An agent id seen without a Claude session, then with one, then with another (and twice
    in one file) never refuses the content: each version is applied."""
    agent = uuid.uuid4()
    versions = [
        (state_agent(agent, None),),
        (state_agent(agent, "s-1"),),
        (state_agent(agent, "s-2"), state_agent(agent, "s-1")),
    ]
    for i, agents in enumerate(versions):
        assert sink.apply_workflow_state(workflow(str(i) * 64, "plan", agents)) is not None


def test_sink_transcripts_registered_once_listed_in_path_order(sink: Sink) -> None:
    """Registering is idempotent per path and counts only new files; listing is in path order
    and `only` restricts it to known paths."""
    assert 2 == sink.register_transcripts([("/t/b.jsonl", "b", None), ("/t/a.jsonl", "a", None)])
    assert 1 == sink.register_transcripts([("/t/a.jsonl", "a", None), ("/t/c.jsonl", "c", "x")])
    assert ["/t/a.jsonl", "/t/b.jsonl", "/t/c.jsonl"] == [f.path for f in sink.transcript_files()]
    only = sink.transcript_files(["/t/c.jsonl", "/t/unknown.jsonl"])
    assert [("/t/c.jsonl", "c", "x", 0, False)] == [
        (f.path, f.claude_session_id, f.claude_agent_id, f.byte_offset, f.missing) for f in only
    ]


def test_sink_missing_transcript_flagged_until_read_again(sink: Sink) -> None:
    """A missing file is flagged; a later commit of its offset clears the flag."""
    sink.register_transcripts([("/t/a.jsonl", "a", None)])
    sink.mark_transcript_missing("/t/a.jsonl")
    assert [True] == [f.missing for f in sink.transcript_files()]
    sink.commit_transcripts(TranscriptWrite(offsets=[offset("/t/a.jsonl", 10)]))
    assert [(10, False)] == [(f.byte_offset, f.missing) for f in sink.transcript_files()]


def test_sink_commit_transcripts_dedupes_usage_and_messages(sink: Sink) -> None:
    """Usage is unique by (message_id, request_id): a repeat is counted as updated; messages
    are unique by uuid; the offsets move with the commit."""
    path = "/t/s-1.jsonl"
    sink.register_transcripts([(path, "s-1", None)])
    agents: list[Any] = [("s-1", None)]
    first = sink.commit_transcripts(
        TranscriptWrite(
            usages=[usage("m1"), usage("m2")],
            agents=agents,
            messages=[message("u1"), message("u2")],
            offsets=[offset(path, 100)],
        )
    )
    again = sink.commit_transcripts(
        TranscriptWrite(
            usages=[usage("m2", output_tokens=20), usage("m3")],
            agents=agents,
            messages=[message("u2"), message("u3")],
            offsets=[offset(path, 200)],
        )
    )
    assert (2, 0, 2) == (first.inserted, first.updated, first.archived)
    assert (1, 1, 1) == (again.inserted, again.updated, again.archived)
    assert [200] == [f.byte_offset for f in sink.transcript_files()]
