"""`session-db quarantine`: list, show, replay after a fix, purge only when asked."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import psycopg

from tests.acceptance.conftest import Env, assert_oracle, cli
from tests.conftest import FIXTURES
from tests.support.spoolwriter import write_event, write_raw


def test_quarantine_replay_after_fix_lands_the_row(env: Env) -> None:
    """A row the database refused is quarantined; after the fix, replay + ingest make it one row."""
    with psycopg.connect(env.db_url) as conn:
        conn.execute(
            "ALTER TABLE agent_logs ADD CONSTRAINT test_no_x CHECK (tool_name IS DISTINCT FROM 'X')"
        )
    good = write_event(
        env.spool, (FIXTURES / "hooks" / "PreToolUse.json").read_bytes(), event="PreToolUse"
    )
    poison = write_event(env.spool, b'{"session_id": "s", "tool_name": "X"}', event="PreToolUse")
    assert 0 == cli(env, "ingest", "--once").returncode
    listed = cli(env, "quarantine", "list", "--json")
    assert [(poison, "db_rejected", "23514")] == [
        (r["name"], r["reason"], r["sqlstate"]) for r in json.loads(listed.stdout)
    ]
    # The JSON shows the time as the text listing does (ISO 8601 UTC), and no log line on stderr.
    (row,) = json.loads(listed.stdout)
    text = cli(env, "quarantine", "list")
    assert datetime.fromisoformat(row["quarantined_at"]).tzinfo is not None
    assert row["quarantined_at"] in text.stdout
    assert "" == listed.stderr
    shown = cli(env, "quarantine", "show", poison)
    assert 0 == shown.returncode
    assert '"tool_name": "X"' in shown.stdout
    with psycopg.connect(env.db_url) as conn:
        conn.execute("ALTER TABLE agent_logs DROP CONSTRAINT test_no_x")
    replayed = cli(env, "quarantine", "replay", "--all")
    assert (0, f"replayed  {poison}") == (replayed.returncode, replayed.stdout.strip())
    assert 0 == cli(env, "ingest", "--once").returncode
    assert [] == json.loads(cli(env, "quarantine", "list", "--json").stdout)
    assert_oracle(env, {good, poison})
    assert 2 == env.rows()


def test_quarantine_replay_keeps_a_file_that_still_does_not_parse(env: Env) -> None:
    """Replaying an unparseable file leaves it in quarantine with its reason and exits 1."""
    env.extra["SESSION_DB_FOREIGN_GRACE_S"] = "0"  # a header-less file is judged at once
    bad = write_raw(env.spool, b"not json at all")
    assert 0 == cli(env, "ingest", "--once").returncode
    replayed = cli(env, "quarantine", "replay", bad)
    assert 1 == replayed.returncode
    assert replayed.stdout.startswith(f"still_bad {bad}")
    assert (env.spool / "quarantine" / bad).exists()
    assert (env.spool / "quarantine" / f"{bad}.reason.json").exists()


def test_quarantine_purge_only_what_is_older_and_only_when_asked(env: Env, tmp_path: Path) -> None:
    """purge --older-than deletes old quarantined events (file and reason), --dry-run deletes nothing."""
    old, new = write_raw(env.spool, b"[1]"), write_raw(env.spool, b"[2]")
    assert 0 == cli(env, "ingest", "--once").returncode
    sidecar = env.spool / "quarantine" / f"{old}.reason.json"
    record = json.loads(sidecar.read_text())
    record["quarantined_at"] -= 40 * 86400
    sidecar.write_text(json.dumps(record))
    dry = cli(env, "quarantine", "purge", "--older-than", "30d", "--dry-run")
    assert (0, f"would delete {old} (not_an_object)") == (dry.returncode, dry.stdout.strip())
    assert (env.spool / "quarantine" / old).exists()
    done = cli(env, "quarantine", "purge", "--older-than", "30d")
    assert (0, f"deleted {old} (not_an_object)") == (done.returncode, done.stdout.strip())
    remaining = sorted(p.name for p in (env.spool / "quarantine").iterdir())
    assert [new, f"{new}.reason.json"] == remaining
    assert 78 == cli(env, "quarantine", "purge", "--older-than", "soon").returncode


def test_orphan_tmp_file_is_quarantined_after_its_ttl(env: Env) -> None:
    """A file a killed hook left in tmp/ is quarantined (reason orphan_tmp) once older than the TTL;
    a younger one is left alone (the hook may still be writing it)."""
    (env.spool / "tmp").mkdir(parents=True)
    old = env.spool / "tmp" / "1.P1Rdeadbeefdeadbeef.host"
    old.write_bytes(b"session-db-spool: 1\nreceived-ns: 1\n\n{")
    os.utime(old, (time.time() - 120, time.time() - 120))
    young = env.spool / "tmp" / "2.P2Rfeedfacefeedface.host"
    young.write_bytes(b"partial")
    env.extra["SESSION_DB_ORPHAN_TTL_S"] = "60"
    assert 0 == cli(env, "ingest", "--once").returncode
    listed = json.loads(cli(env, "quarantine", "list", "--json").stdout)
    assert [(old.name, "orphan_tmp")] == [(r["name"], r["reason"]) for r in listed]
    assert young.exists()


def test_ingest_once_reports_the_files_it_left_for_later(env: Env) -> None:
    """A header-less file that does not parse yet, inside its grace period (a foreign writer may
    be mid-write), is neither a row nor quarantined: `ingest --once` leaves it in new/ and says
    so (deferred=1)."""
    name = write_raw(env.spool, b'{"hook_event_name": "Notif')
    done = cli(env, "ingest", "--once", SESSION_DB_FOREIGN_GRACE_S="600")
    assert 0 == done.returncode, done.stderr[-2000:]
    (line,) = [json.loads(raw) for raw in done.stderr.splitlines() if '"ingest_done"' in raw]
    assert (0, 0, 1) == (line["rows"], line["quarantined"], line["deferred"])
    assert [name] == os.listdir(env.spool / "new")
