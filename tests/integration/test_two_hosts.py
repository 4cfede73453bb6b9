"""Many hosts, one database: two daemons (two spools, two host names) writing at the same time.

`host` is part of every spool event's key and of the sessions key (host, slug); token usage is
keyed by the API response, so a transcript read on both hosts is counted once."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from daemon.errors import TransientDbError
from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.transcripts import TranscriptReader
from daemon.workflows import SessionTracker
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event, write_raw

HOSTS = ("host-a", "host-b")
SCENARIO = {"host-a": "main", "host-b": "extras"}  # a different Claude Code session on each
SLUG = "shared-slug"  # the same workflow name on both hosts: two workflows
FOREIGN = "shared-name.json"  # the same spool file name on both hosts: two events
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["scenarios"]
RETRIES = 5


@dataclass
class HostDaemon:
    """What `session-db run` holds on one host: spool, sink, ingestor, state and transcript readers."""

    host: str
    spool: Spool
    sink: PostgresSink
    project: Path

    def pass_once(self, transcripts: list[Path]) -> None:
        """One daemon pass; a transient error (a deadlock with the other host) is retried, as
        the service loop does."""
        ingestor = Ingestor(
            self.spool,
            self.sink,
            host=self.host,
            batch_max_files=7,
            batch_max_bytes=1 << 20,
            foreign_grace_s=0,
        )
        # The transcripts of this test live in a temporary folder.
        reader = TranscriptReader(self.sink, self.host, allowed_roots=[Path(tempfile.gettempdir())])
        for attempt in range(RETRIES):
            try:
                ingestor.drain()
                SessionTracker(self.sink, self.host).sync([self.project])
                reader.register(transcripts)
                reader.sync()
            except TransientDbError:
                self.sink.close()
                time.sleep(0.1 * (attempt + 1))
            else:
                return
        raise AssertionError(f"{self.host}: still failing after {RETRIES} tries")


@pytest.fixture
def daemons(db_url: str, tmp_path: Path) -> Iterator[list[HostDaemon]]:
    out = []
    for host in HOSTS:
        spool = Spool(tmp_path / host / "spool")
        spool.ensure()
        sink = PostgresSink(
            db_url,
            host=host,
            connect_timeout_s=5,
            statement_timeout_ms=30_000,
            lock_timeout_ms=10_000,
        )
        out.append(HostDaemon(host, spool, sink, tmp_path / host / "project"))
    yield out
    for d in out:
        d.sink.close()


def feed(d: HostDaemon) -> int:
    """The host's Claude Code session (hook events with SESSION_DB_SESSION), a foreign file, and a
    state.json of the shared slug. Returns the spool files written."""
    folder = FIXTURES / "hooks" / "all" / SCENARIO[d.host]
    files = sorted(folder.iterdir())
    for f in files:
        write_event(
            d.spool.root,
            f.read_bytes(),
            event=f.stem.split("_", 1)[1],
            env={"SESSION_DB_SESSION": SLUG},
            host=d.host,
            fsync=False,
        )
    write_raw(
        d.spool.root, b'{"hook_event_name": "Notification", "message": "same name"}', name=FOREIGN
    )
    state = d.project / "agents" / "sessions" / SLUG / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"slug": SLUG, "status": "build", "title": f"on {d.host}"}))
    return len(files) + 1


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def test_two_hosts_one_database_never_collide(
    daemons: list[HostDaemon], db_url: str, tmp_path: Path
) -> None:
    """Two daemons ingesting at once into one database: every event of each host is one row
    (a file name used on both hosts included), the same slug is one workflow per host with its
    own agents and phase row, and a transcript read on both hosts is counted once."""
    written = {d.host: feed(d) for d in daemons}
    shared = tmp_path / "transcripts"  # the same files, the same paths, read by both hosts
    shutil.copytree(FIXTURES / "transcripts" / "main", shared)
    transcripts = sorted(shared.glob("*.jsonl"))
    errors: list[BaseException] = []

    def run(d: HostDaemon) -> None:
        try:
            d.pass_once(transcripts)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors

    per_host = dict(
        query(
            db_url, "SELECT host, count(*) FROM agent_logs WHERE event_category = 'hook' GROUP BY 1"
        )
    )
    assert written == per_host
    uids = [r[0] for r in query(db_url, "SELECT event_uid FROM agent_logs")]
    assert len(uids) == len(set(uids))
    assert {f"{FOREIGN}@host-a", f"{FOREIGN}@host-b"} <= set(uids)

    sessions = query(db_url, "SELECT host, slug, status, title FROM sessions ORDER BY host")
    assert [
        ("host-a", SLUG, "build", "on host-a"),
        ("host-b", SLUG, "build", "on host-b"),
    ] == sessions
    links = query(
        db_url,
        "SELECT a.sdk_session_id, s.host FROM agents a JOIN sessions s ON s.id = a.session_id"
        " WHERE a.claude_agent_id IS NULL ORDER BY 2",
    )
    assert [
        (EXPECTED["main"]["session_id"], "host-a"),
        (EXPECTED["extras"]["session_id"], "host-b"),
    ] == links
    unlinked = query(
        db_url,
        "SELECT count(*) FROM agent_logs l JOIN sessions s ON s.id = l.session_id WHERE s.host <> l.host",
    )
    assert [(0,)] == unlinked
    phases = query(
        db_url, "SELECT host, event_type FROM agent_logs WHERE event_category = 'phase' ORDER BY 1"
    )
    assert [("host-a", "build"), ("host-b", "build")] == phases

    main = EXPECTED["main"]
    assert [(len(HOSTS) * 2,)] == query(
        db_url, "SELECT count(*) FROM transcript_files WHERE path LIKE %s", f"{shared}/%"
    )
    ((responses, cost),) = query(
        db_url,
        "SELECT responses, cost_usd FROM claude_session_costs WHERE claude_session_id = %s",
        main["session_id"],
    )
    assert main["transcript_dedup_total"]["responses"] == responses
    assert abs(Decimal(main["transcript_dedup_total"]["cost_usd"]) - Decimal(cost)) < Decimal(
        "0.000001"
    )
