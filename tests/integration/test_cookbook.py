"""Every SQL recipe in the docs runs against one data set: the recorded Claude Code 2.1.330
fixtures (every hook event of every scenario, delivered 1 ms apart from a fixed instant, their
transcripts, and the workflow `state.json` shown in the cookbook).

A ```sql block followed by an untagged ``` block is a recipe with its output: the output must
be exactly what psql prints for it on that data set. `SESSION_DB_UPDATE_DOCS=1` rewrites the
output blocks instead (run it after changing a view, then read the diff).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.transcripts import TranscriptReader
from daemon.workflows import SessionTracker
from tests.conftest import FIXTURES, REPO
from tests.integration.conftest import HOST
from tests.support.spoolwriter import write_event

DOCS_WITH_RECIPES = [REPO / "docs" / "cookbook.md", REPO / "README.md"]
UPDATE = os.environ.get("SESSION_DB_UPDATE_DOCS") == "1"
BASE_NS = 1_795_436_016_000_000_000  # 2026-11-23T12:13:36Z
STEP_MS = 1
SCENARIO_GAP_MS = 1_000
STATE_MTIME_NS = BASE_NS + 60 * 10**9  # the workflow's phase change is seen a minute later
MAIN_SID = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
STATE = {
    "slug": "add-login",
    "title": "Add a login page",
    "status": "build",
    "session_type": "full",
    "working_dir": "/src/app",
    "total_cost": 0.09,
    "agents": [
        {"id": "7f0c7c7e-3c1e-4e39-9a59-3d1f8f0c2b11", "agent_type": "builder",
         "sdk_session_id": MAIN_SID, "model": "claude-sonnet-4-5-20250929", "model_alias": "sonnet",
         "status": "executing", "checkpoint_id": "cp-3", "started_at": "2026-11-23T12:00:00Z",
         "completed_at": None},
    ],
}  # fmt: skip
BLOCK = re.compile(r"```sql\n(?P<sql>.*?)```\n(?:```\n(?P<out>.*?)```\n)?", re.DOTALL)


def recipes(path: Path) -> list[re.Match[str]]:
    return list(BLOCK.finditer(path.read_text()))


def deliver_fixtures(spool: Spool) -> None:
    """Every scenario's hook events in firing order, 1 ms apart, scenarios 1 s apart."""
    start = 0
    for scenario in sorted((FIXTURES / "hooks" / "all").iterdir()):
        for i, f in enumerate(sorted(scenario.iterdir())):
            write_event(
                spool.root,
                f.read_bytes(),
                event=f.stem.split("_", 1)[1],
                received_ns=BASE_NS + (start + i * STEP_MS) * 1_000_000,
                host=HOST,
                fsync=False,
            )
        start += SCENARIO_GAP_MS


@pytest.fixture(scope="module")
def fixture_db(postgresql_proc: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database holding the whole fixture data set, shared by every recipe."""
    from tests.conftest import fresh_database

    tmp = tmp_path_factory.mktemp("cookbook")
    with fresh_database(postgresql_proc, "cookbook") as url:
        sink = PostgresSink(
            url, host=HOST, connect_timeout_s=5, statement_timeout_ms=30_000, lock_timeout_ms=10_000
        )
        try:
            spool = Spool(tmp / "spool")
            spool.ensure()
            deliver_fixtures(spool)
            Ingestor(
                spool, sink, host=HOST, batch_max_files=500, batch_max_bytes=8 << 20,
                foreign_grace_s=0.0,
            ).drain()  # fmt: skip
            state_dir = tmp / "project" / "agents" / "sessions" / "add-login"
            state_dir.mkdir(parents=True)
            state = state_dir / "state.json"
            state.write_text(json.dumps(STATE))
            os.utime(state, ns=(STATE_MTIME_NS, STATE_MTIME_NS))
            SessionTracker(sink, HOST).sync([tmp / "project"])
            transcripts = tmp / "transcripts"
            shutil.copytree(FIXTURES / "transcripts", transcripts)
            reader = TranscriptReader(sink, HOST, allowed_roots=[transcripts])
            reader.register(sorted(transcripts.rglob("*.jsonl")))
            reader.sync()
        finally:
            sink.close()
        yield url


def psql(url: str, sql: str) -> str:
    """What psql prints for `sql` (aligned, no ~/.psqlrc), as a reader of the docs would see it."""
    done = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
        input=sql, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PGTZ": "UTC", "PAGER": "", "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return "\n".join(line.rstrip() for line in done.stdout.rstrip("\n").split("\n")) + "\n"


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))


CASES = [
    pytest.param(path, i, id=f"{path.name}#{i}")
    for path in DOCS_WITH_RECIPES
    for i in range(len(recipes(path)))
]


def test_cookbook_docs_have_recipes() -> None:
    """The cookbook holds recipes with outputs (a regex that stopped matching would pass vacuously)."""
    found = recipes(DOCS_WITH_RECIPES[0])
    assert len(found) >= 10
    assert sum(1 for m in found if m.group("out")) >= 10


@pytest.mark.parametrize(("path", "index"), CASES)
def test_cookbook_recipe_runs_and_prints_its_documented_output(
    fixture_db: str, path: Path, index: int
) -> None:
    """Each recipe runs on the fixture data set; where the doc shows output, psql prints exactly that."""
    match = recipes(path)[index]
    sql = match.group("sql").replace("'…'", f"'{MAIN_SID}'")
    printed = psql(fixture_db, sql)
    documented = match.group("out")
    if documented is None:
        return
    if UPDATE:
        text = path.read_text()
        start, end = match.span("out")
        path.write_text(text[:start] + printed + text[end:])
        return
    assert normalise(documented) == normalise(printed), f"{path.name} recipe {index}:\n{sql}"
