"""`session-db maintain` (and its timer) and `session-db prune`: partitions ahead, old months
dropped and reported."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from daemon import partitions
from daemon.resources import data_path
from tests.acceptance.conftest import Env, cli


def months_ago(n: int) -> datetime:
    """The first instant of the UTC month n months before the current one."""
    now = datetime.now(UTC)
    return partitions.add_months(datetime(now.year, now.month, 1, tzinfo=UTC), -n)


def add_rows(env: Env, times: list[datetime]) -> None:
    with psycopg.connect(env.db_url) as conn:
        for i, at in enumerate(times):
            conn.execute(
                "INSERT INTO agent_logs (event_uid, host, event_category, event_type, occurred_at)"
                " VALUES (%s, 'h', 'hook', 'Stop', %s)",
                (f"{i}.h", at),
            )


def partition_rows(env: Env) -> dict[str, int]:
    with psycopg.connect(env.db_url) as conn:
        return dict(
            conn.execute(
                "SELECT c.relname::text, (SELECT count(*) FROM agent_logs l WHERE l.tableoid = c.oid)"
                " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'agent_logs'::regclass"
            ).fetchall()
        )


def test_maintain_creates_missing_partitions_and_moves_default_rows(env: Env) -> None:
    """maintain creates the months ahead that are missing (rows already in DEFAULT move in) and
    --split-default gives older DEFAULT rows their months; both print what they did."""
    ahead = partitions.add_months(months_ago(0), 2)
    name = partitions.partition_name(ahead)
    with psycopg.connect(env.db_url) as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    add_rows(env, [ahead + timedelta(days=1), datetime(2021, 2, 3, tzinfo=UTC)])

    done = cli(env, "maintain")
    assert 0 == done.returncode, done.stderr
    assert f"created {name} (1 rows moved in from agent_logs_default)\n" == done.stdout
    split = cli(env, "maintain", "--split-default")
    assert 0 == split.returncode, split.stderr
    assert "created agent_logs_2021_02 (1 rows moved in from agent_logs_default)\n" == split.stdout
    rows = partition_rows(env)
    assert (1, 1, 0) == (rows[name], rows["agent_logs_2021_02"], rows["agent_logs_default"])


def test_prune_drops_old_partitions_and_prints_what_it_removed(env: Env) -> None:
    """prune --older-than 180d drops exactly the monthly partitions that ended more than 180 days
    ago, prints each with its range and row count and a total, keeps DEFAULT (reporting its old
    rows); --dry-run prints the same and drops nothing."""
    old = [months_ago(n) for n in (12, 11, 10)]  # whole months well before the cutoff
    recent = [months_ago(n) for n in (3, 2)]  # inside 180 days
    times = [m + timedelta(days=d) for m in old + recent for d in (0, 10)]
    add_rows(env, [*times, old[0] + timedelta(days=20), datetime(1990, 1, 1, tzinfo=UTC)])
    split = cli(env, "maintain", "--split-default")
    assert 0 == split.returncode, split.stderr
    with psycopg.connect(env.db_url) as conn:  # 1990 stays in DEFAULT, as a late event would
        conn.execute("DROP TABLE agent_logs_1990_01")
        conn.execute(
            "INSERT INTO agent_logs (event_uid, host, event_category, event_type, occurred_at)"
            " VALUES ('late.h', 'h', 'hook', 'Stop', '1990-01-01 00:00:00+00')"
        )
    before = partition_rows(env)
    doomed = [partitions.partition_name(m) for m in old]

    dry = cli(env, "prune", "--older-than", "180d", "--dry-run")
    assert 0 == dry.returncode, dry.stderr
    assert before == partition_rows(env)

    done = cli(env, "prune", "--older-than", "180d")
    assert 0 == done.returncode, done.stderr
    lines = done.stdout.splitlines()
    expected = [
        f"dropped {partitions.partition_name(m)}  {m:%Y-%m-%d} .. {partitions.add_months(m, 1):%Y-%m-%d}  {n} rows"
        for m, n in zip(old, (3, 2, 2), strict=True)
    ]
    assert expected == lines[:3]
    assert lines[3].startswith("prune: dropped 3 partitions, 7 rows of agent_logs older than ")
    assert lines[4].startswith("note: 1 rows older than the cutoff are in agent_logs_default")
    assert [
        line.replace("dropped", "would drop", 1) for line in lines[:4]
    ] == dry.stdout.splitlines()[:4]
    after = partition_rows(env)
    assert {k: v for k, v in before.items() if k not in doomed} == after
    assert 2 == after[partitions.partition_name(recent[0])]


def test_prune_refuses_a_minutes_typo(env: Env) -> None:
    """--older-than 180m (minutes, meant as months) would drop last month: refused, exit 78."""
    done = cli(env, "prune", "--older-than", "180m")
    assert 78 == done.returncode
    assert "at least 1d" in done.stdout + done.stderr


def test_maintain_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify --user accepts the maintain service and its daily timer."""
    session_db = Path(sys.executable).with_name("session-db")
    names = ("session-db-maintain.service", "session-db-maintain.timer")
    for name in names:
        text = (data_path("systemd") / name).read_text()
        (tmp_path / name).write_text(
            text.replace(
                "ExecStart=%h/.local/bin/session-db maintain", f"ExecStart={session_db} maintain"
            )
        )
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd (.ci/bootstrap does)"
    done = subprocess.run(
        [tool, "verify", "--user", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        env={"XDG_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert (0, "") == (done.returncode, done.stderr.strip())
