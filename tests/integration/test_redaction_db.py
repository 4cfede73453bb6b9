"""Secrets and privacy against a real server: a hook payload's secrets never reach the database.

Events go through the real hook script into a spool and through `Service.run_once` (what
`session-db ingest --once` runs) with settings loaded like the daemon's, so the test covers
the wiring from SESSION_DB_* variables to the stored row, not only the redactor.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import psycopg
from structlog.testing import capture_logs

from daemon import config
from daemon.ingest import DrainStats
from daemon.worker import Service
from tests.conftest import REPO

HOOK = REPO / "hooks" / "session-db-hook"
SID = "7d4c2f1e-9b8a-4c3d-8e7f-6a5b4c3d2e1f"
ANTHROPIC = (
    "sk-ant-api03-"
    "Jq7vR2kLm9Np4Tz1Wc8Yb3Hd6Jf0Gs5Ae2Uk7Io1Pl9Mn3Bv6Cx8Zq4Wr0Ty2Es7Dg1Fh9Jk3Lp5Oa6Si8Ud4Nm0Qb2Ve7Rc-AA"
)
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = (ANTHROPIC, AWS_SECRET)


def events() -> list[tuple[str, dict[str, Any]]]:
    """A session in which the user pastes a key, and a Bash call uses and prints both secrets."""
    base = {"session_id": SID, "transcript_path": "/nonexistent/t.jsonl", "cwd": "/src/app"}
    command = f"AWS_SECRET_ACCESS_KEY={AWS_SECRET} ANTHROPIC_API_KEY={ANTHROPIC} ./deploy.sh"
    tool = {
        "tool_name": "Bash",
        "tool_use_id": "toolu_redact_01",
        "tool_input": {"command": command},
    }
    stdout = (
        f"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {AWS_SECRET}\n"
        f"ANTHROPIC_API_KEY={ANTHROPIC}\n"
    )
    return [
        (
            "UserPromptSubmit",
            {**base, "hook_event_name": "UserPromptSubmit", "prompt": f"deploy with {ANTHROPIC}"},
        ),
        ("PreToolUse", {**base, "hook_event_name": "PreToolUse", **tool}),
        (
            "PostToolUse",
            {
                **base,
                "hook_event_name": "PostToolUse",
                **tool,
                "tool_response": {"stdout": stdout, "stderr": "", "interrupted": False},
                "duration_ms": 12,
            },
        ),
        ("Stop", {**base, "hook_event_name": "Stop", "stop_hook_active": False}),
    ]


def ingest(
    tmp_path: Path, db_url: str, **env: str
) -> tuple[DrainStats, list[MutableMapping[str, Any]]]:
    """Deliver events() through the hook, then `ingest --once` with these SESSION_DB_* values;
    return the totals and the batch_committed log lines."""
    spool = tmp_path / "spool"
    hook_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    for event, payload in events():
        done = subprocess.run(
            [str(HOOK), "--spool", str(spool), "--fsync", "none", event],
            input=orjson.dumps(payload),
            env=hook_env,
            capture_output=True,
            check=True,
            timeout=30,
        )
        assert b"" == done.stderr
    settings = settings_for(tmp_path, db_url, spool, **env)
    with capture_logs() as logs:
        stats = Service(settings).run_once()
    assert (4, 0) == (stats.inserted, stats.quarantined)
    return stats, [e for e in logs if e["event"] == "batch_committed"]


def database_text(db_url: str) -> str:
    """Every row of every table, as text: what anyone with read access could see."""
    with psycopg.connect(db_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        assert "public.agent_logs" in tables
        return "\n".join(
            str(row[0])
            for t in tables
            for row in conn.execute(f"SELECT t::text FROM {t} t")  # noqa: S608 - names from the catalog
        )


def rows(db_url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT event_type, payload::text, transforms, payload_sha256 FROM agent_logs"
                " WHERE event_category = 'hook'"
            )
        }


def settings_for(tmp_path: Path, db_url: str, spool: Path, **env: str) -> config.Settings:
    """The daemon's settings for this test's database and spool, plus SESSION_DB_<KEY> values."""
    return config.load(
        {
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "SESSION_DB_URL": db_url,
            "SESSION_DB_SPOOL": str(spool),
            "SESSION_DB_STATE_DIR": str(tmp_path / "state"),
            "SESSION_DB_HOST": "test-host",
            **{f"SESSION_DB_{k.upper()}": v for k, v in env.items()},
        }
    )


def test_redaction_hook_payload_secrets_never_reach_the_database(
    tmp_path: Path, db_url: str
) -> None:
    """With default settings, an sk-ant- key and an AWS secret access key in a prompt, a Bash
    command and its output are in no column of any table; the rows say what was redacted and
    keep no hash of the original; the canonical batch line counts the replacements."""
    stats, batches = ingest(tmp_path, db_url)
    dump = database_text(db_url)
    for secret in SECRETS:
        assert secret not in dump
    assert "AKIAIOSFODNN7EXAMPLE" not in dump
    by_type = rows(db_url)
    for payload, _, _ in by_type.values():
        for secret in SECRETS:
            assert secret not in payload
    assert (["redacted", "redacted:anthropic_key"], None) == by_type["UserPromptSubmit"][1:]
    assert (
        ["redacted", "redacted:anthropic_key", "redacted:aws_secret_access_key"],
        None,
    ) == by_type["PreToolUse"][1:]
    assert [
        "redacted",
        "redacted:anthropic_key",
        "redacted:aws_access_key_id",
        "redacted:aws_secret_access_key",
    ] == by_type["PostToolUse"][1]
    assert (None, None) == by_type["Stop"][1:]
    pre = orjson.loads(by_type["PreToolUse"][0])
    assert (
        "AWS_SECRET_ACCESS_KEY=[REDACTED:aws_secret_access_key]"
        " ANTHROPIC_API_KEY=[REDACTED:anthropic_key] ./deploy.sh"
    ) == pre["tool_input"]["command"]
    assert 1 + 2 + (2 + 3) == stats.redactions == sum(b["redactions"] for b in batches)
    with psycopg.connect(db_url) as conn:
        calls = conn.execute("SELECT tool_use_id, outcome FROM tool_calls").fetchall()
    assert [("toolu_redact_01", "ok")] == calls  # the views still pair the redacted events


def test_redaction_privacy_switches_drop_prompt_and_tool_output(
    tmp_path: Path, db_url: str
) -> None:
    """drop_prompts and drop_tool_output store the prompt and the tool output as null, say so in
    transforms, and leave the tool input (redacted) and the other events alone."""
    ingest(tmp_path, db_url, drop_prompts="true", drop_tool_output="yes")
    by_type = rows(db_url)
    prompt = orjson.loads(by_type["UserPromptSubmit"][0])
    post = orjson.loads(by_type["PostToolUse"][0])
    assert (None, None) == (prompt["prompt"], post["tool_response"])
    assert (["dropped:/prompt"], None) == by_type["UserPromptSubmit"][1:]
    assert [
        "dropped:/tool_response",
        "redacted",
        "redacted:anthropic_key",
        "redacted:aws_secret_access_key",
    ] == (by_type["PostToolUse"][1])
    assert "./deploy.sh" in post["tool_input"]["command"]
    dump = database_text(db_url)
    assert "deploy with" not in dump
    assert "aws_access_key_id =" not in dump
    with psycopg.connect(db_url) as conn:
        turns = conn.execute("SELECT prompt_chars FROM turns").fetchall()
    assert [(None,)] == turns


def test_redaction_switched_off_stores_payloads_verbatim(tmp_path: Path, db_url: str) -> None:
    """SESSION_DB_REDACT=false: the payloads are stored as sent, secrets included, with no
    transforms (for users who want an exact record and protect the database otherwise)."""
    stats, batches = ingest(tmp_path, db_url, redact="false")
    by_type = rows(db_url)
    sent = dict(events())
    for event, (payload, transforms, _sha) in by_type.items():
        assert sent[event] == orjson.loads(payload)
        assert transforms is None
    assert 0 == stats.redactions == sum(b["redactions"] for b in batches)
    assert ANTHROPIC in database_text(db_url)


# Issue 12 item 7: one secret, every JSON spelling. (name, payload text as sent, secret part)
SPELLINGS = [
    ("plain", '{"prompt":"key ' + ANTHROPIC + '"}', ANTHROPIC),
    ("u002d", '{"prompt":"key ' + ANTHROPIC.replace("-", "\\u002d", 1) + '"}', ANTHROPIC),
    ("u0041", '{"prompt":"id \\u0041KIAIOSFODNN7EXAMPLE"}', "AKIAIOSFODNN7EXAMPLE"),
    ("u005f", '{"prompt":"ghp\\u005f' + "a1B2c3D4" * 5 + '"}', "ghp_" + "a1B2c3D4" * 5),
    (
        "slash_aws",
        '{"prompt":"aws_secret_access_key=' + AWS_SECRET.replace("/", "\\/") + '"}',
        AWS_SECRET,
    ),
    (
        "slash_pem",
        '{"prompt":"-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\/IBADANBgkqhkiG9w0BAQ\\/EFAASC\\n'
        '-----END PRIVATE KEY-----"}',
        "MIIEvQ/IBADANBgkqhkiG9w0BAQ/EFAASC",
    ),
    ("blank_colon", '{"prompt":"x","password" : "hunter2-Blank-Colon"}', "hunter2-Blank-Colon"),
    ("escaped_key", '{"prompt":"x","pass\\u0077ord":"hunter2-Escaped-Key"}', "hunter2-Escaped-Key"),
]


def test_redaction_every_json_spelling_of_a_secret_is_redacted_in_the_database(
    tmp_path: Path, db_url: str
) -> None:
    """A secret spelled with optional JSON escapes (\\u002d, \\u0041, \\u005f, \\/ in an AWS
    secret and a PEM body) or with blanks before its key's colon reaches no table: redaction
    matches what jsonb stores, so each spelling is stored as a marker, as the plain one is."""
    spool = tmp_path / "spool"
    hook_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    for _, text, _ in SPELLINGS:
        subprocess.run(
            [str(HOOK), "--spool", str(spool), "--fsync", "none", "UserPromptSubmit"],
            input=text.encode(),
            env=hook_env,
            capture_output=True,
            check=True,
            timeout=30,
        )
    settings = settings_for(tmp_path, db_url, spool)
    stats = Service(settings).run_once()
    assert (len(SPELLINGS), 0) == (stats.inserted, stats.quarantined)
    dump = database_text(db_url)
    leaked = [name for name, _, secret in SPELLINGS if secret in dump]
    assert [] == leaked
    with psycopg.connect(db_url) as conn:
        redacted = conn.execute(
            "SELECT count(*) FROM agent_logs WHERE 'redacted' = ANY(transforms)"
        ).fetchone()
    assert (len(SPELLINGS),) == redacted
