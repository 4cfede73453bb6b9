"""daemon.redaction: secrets never leave parse() unredacted, nothing else changes, the JSON stays
valid, and the privacy switches drop exactly the fields they name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import config, wiring
from daemon.errors import EX_CONFIG, ConfigError
from daemon.events import parse, unescape_nul
from daemon.redaction import Redactor, drop_fields
from daemon.redaction_rules import DEFAULT_RULES
from tests.support.spoolwriter import encode

# Realistic fakes: the right shape and length, random characters.
ANTHROPIC = (
    "sk-ant-api03-"
    "Xq3vR8kLm2Np7Tz9Wc4Yb6Hd1Jf5Gs0Ae8Uk3Io7Pl2Mn6Bv9Cx4Zq1Wr5Ty8Es3Dg7Fh2Jk6Lp0Oa9Si4Ud1Nm5Qb8Ve2Rc-AA"
)
OPENAI_PROJECT = (
    "sk-proj-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3_-aB4cD5eF6gH7iJ8kL9mN0oP1qR2sT3uV4wX5yZ6"
)
OPENAI_LEGACY = "sk-" + "Zr4Lq8Xv2Nm6Tb1Wc5Yd9Hf3T3BlbkFJJg7Ks0Pa4Ue8Io2Ml6Nb0Vc"
GITHUB_CLASSIC = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_FINE = (
    "github_pat_11ABCDEFG0"
    + "aBcDeFgHiJkLmNoPqRsTuV_"
    + "W1x2Y3z4A5b6C7d8E9f0G1h2I3j4K5l6M7n8O9p0Q1r2S3t4U5v6W7x8Y9z0AbC"
)
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SLACK = "xoxb-2045678901234-2045678901234-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE = "AIza" + "SyD3-kLm9Np2Qr5St8Uv1Wx4Yz7Ab0Cd3Ef"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM_BODY = (
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2\nQvHhZ5yZ0x9b8n7Kk1Jk2lM3nO4pQ5rS6tU7vW8xY9zA0bC1dE2f"
)

# (kind, text containing the secret, the secret)
SECRETS = [
    ("anthropic_key", f"ANTHROPIC_API_KEY={ANTHROPIC} claude -p hi", ANTHROPIC),
    ("anthropic_key", f"key:\n{ANTHROPIC}\n", ANTHROPIC),
    ("openai_key", f"export OPENAI_API_KEY='{OPENAI_PROJECT}'", OPENAI_PROJECT),
    ("openai_key", f'client = OpenAI(api_key="{OPENAI_LEGACY}")', OPENAI_LEGACY),
    (
        "github_token",
        f"git clone https://x-access-token:{GITHUB_CLASSIC}@github.com/o/r",
        GITHUB_CLASSIC,
    ),
    ("github_token", f"gh auth login --with-token <<< {GITHUB_FINE}", GITHUB_FINE),
    ("aws_access_key_id", f"aws_access_key_id = {AWS_ID}\n", AWS_ID),
    ("aws_secret_access_key", f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    ("aws_secret_access_key", f"[default]\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET),
    ("aws_secret_access_key", f"aws configure set aws_secret_access_key {AWS_SECRET}", AWS_SECRET),
    ("aws_secret_access_key", f'{{"SecretAccessKey": "{AWS_SECRET}", "x": 1}}', AWS_SECRET),
    ("slack_token", f"curl -H 'Authorization: Bearer {SLACK}' https://slack.com/api", SLACK),
    ("stripe_key", f"stripe.api_key = '{STRIPE}'", STRIPE),
    ("google_api_key", f"https://maps.googleapis.com/maps/api?key={GOOGLE}", GOOGLE),
    (
        "private_key",
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n",
        f"\n{PEM_BODY}\n",
    ),
    ("private_key", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}", f"\n{PEM_BODY}"),
    ("bearer_token", f"curl -H 'Authorization: Bearer {JWT}' https://api.example.com", JWT),
    ("basic_auth", "curl -H 'Authorization: Basic dXNlcjpodW50ZXIy' https://x", "dXNlcjpodW50ZXIy"),
    ("url_password", "psql postgresql://app:Tr0ub4dor&3@db.internal:5432/app", "Tr0ub4dor&3"),
    (
        "url_password",
        "git remote add o https://bob:p@ss%2Fw0rd@git.example.com/r.git",
        "p@ss%2Fw0rd",
    ),
    ("secret_assignment", "PGPASSWORD=hunter2 psql -h db", "hunter2"),
    ("secret_assignment", "db.connect(user='app', password='s3cr3t!x')", "s3cr3t!x"),
    ("secret_assignment", "mysql -u root --password=correcthorse db", "correcthorse"),
    ("secret_assignment", "curl 'https://api.example.com/v1?api_key=9f8e7d6c5b4a'", "9f8e7d6c5b4a"),
    ("secret_assignment", 'GITHUB_TOKEN="tok-123456" make release', "tok-123456"),
]

# Text that must come out byte for byte as it went in.
NOT_SECRETS = [
    "The quick brown fox jumps over the lazy dog.",
    "task-sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",  # sk- inside a word
    "pip install scikit-learn  # sk-learn",
    "risk-assessment-2024-Q3-final-report-version2",
    "sk-some-feature-branch-name-without-capitals-2024",
    "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 (HEAD -> main)",
    "session 05e00ce7-caef-4c5c-93ef-fa0df076b5b2",
    "toolu_01ABCDEFGHJKLMNPQRSTUVWXYZ and msg_01XYZ",
    "The secret access key is stored in Vault; see aws_secret_access_key docs.",
    "AKIA is the prefix of long-term AWS access key ids",
    "Use a Bearer token in the Authorization header.",
    'curl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com',
    "Authorization: Bearer ${TOKEN}",
    "https://example.com:8443/path?q=1&user=a@b.c",
    "git@github.com:org/repo.git ssh://git@host/repo postgresql://user@host/db",
    "password = input('Password: ')",
    "PASSWORD=$DB_PASSWORD TOKEN=${TOKEN} ./run",
    "url.render_as_string(hide_password=False); connect(password=password, api_key=os.environ['K'])",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
    'if line == "-----BEGIN RSA PRIVATE KEY-----":\n    key = parse(rest)  # not key material',
    "Basic usage: authorization required",
    "/home/me/src/session-db/daemon/redaction.py:42",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)


def redact(value: Any, redactor: Redactor | None = None) -> tuple[Any, int]:
    """Redact the JSON encoding of `value`; (decoded result, count). Asserts the text stays JSON."""
    result = (redactor or Redactor()).redact(orjson.dumps(value))
    return orjson.loads(result.body), result.count


def wrap(payload: bytes, event: str) -> bytes:
    return encode(payload, event=event, received_ns=1_795_436_016_586_690_803, host="h")


def parse_with(payload: bytes, event: str, redactor: Redactor | None, **kw: Any) -> Any:
    return parse(
        "1.P1R0.h", wrap(payload, event), default_host="h", mtime_ns=1, redactor=redactor, **kw
    )


@pytest.mark.parametrize(
    ("kind", "text", "secret"), SECRETS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SECRETS)]
)
def test_redaction_default_pattern_replaces_the_secret_and_keeps_the_context(
    kind: str, text: str, secret: str
) -> None:
    """Each default format is found in a JSON string value, replaced by a marker naming its kind,
    and the text around it stays."""
    result = Redactor().redact(orjson.dumps({"command": text}))
    stored = orjson.loads(result.body)["command"]
    assert secret not in stored
    assert f"[REDACTED:{kind}]" in stored
    assert {kind: 1} == dict(result.counts)
    assert text.replace(secret, f"[REDACTED:{kind}]") == stored


def test_redaction_every_default_rule_is_exercised() -> None:
    """The corpus above covers every built-in rule (a new rule needs a realistic example)."""
    assert {r.kind for r in DEFAULT_RULES} == {kind for kind, _, _ in SECRETS}


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_redaction_leaves_ordinary_text_alone(text: str) -> None:
    """Prose, ids, hashes, paths, placeholders and public keys are not secrets: the payload is
    returned unchanged, as the same object (the fast path)."""
    body = orjson.dumps({"tool_response": {"stdout": text}, "cwd": "/src", "session_id": "s"})
    result = Redactor().redact(body)
    assert body is result.body
    assert 0 == result.count


def test_redaction_recorded_fixtures_contain_no_false_positive() -> None:
    """Nothing in the recorded Claude Code 2.1.330 hook payloads and transcripts is redacted."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    redactor = Redactor()
    hits = {
        str(p.relative_to(fixtures)): dict(redactor.redact(p.read_bytes()).counts)
        for p in sorted(fixtures.rglob("*"))
        if p.is_file() and p.suffix in (".json", ".jsonl")
    }
    assert {} == {k: v for k, v in hits.items() if v}


def test_redaction_key_names_nested_in_objects_and_arrays() -> None:
    """A string value under a secret-looking key is replaced at any depth, whatever the key's case
    and separators; other members, non-string values and empty strings stay."""
    value = {
        "tool_input": {
            "headers": {"Authorization": "token abc", "X-Api-Key": "k1", "Accept": "json"},
            "users": [{"name": "a", "db_password": "hunter2"}, {"clientSecret": "cs", "pin": "1"}],
            "Password": "",
            "has_password": True,
            "secret": 123,
            "passwords": ["not", "a", "string value"],
        },
        "session_id": "s",
    }
    stored, count = redact(value)
    marker = "[REDACTED:key_name]"
    assert 4 == count
    assert {
        "tool_input": {
            "headers": {"Authorization": marker, "X-Api-Key": marker, "Accept": "json"},
            "users": [{"name": "a", "db_password": marker}, {"clientSecret": marker, "pin": "1"}],
            "Password": "",
            "has_password": True,
            "secret": 123,
            "passwords": ["not", "a", "string value"],
        },
        "session_id": "s",
    } == stored


def test_redaction_key_name_spellings() -> None:
    """A key name matches as the end of the key, in any case, with "_", "-", "." or nothing
    between its words; a key that only contains the name elsewhere does not match."""
    keys = ["api_key", "API-KEY", "apiKey", "x.api.key", "openai_api_key", "X-Api-Key"]
    others = ["api_key_id", "keyboard", "password_hint", "secretary", "tokens", "session_id"]
    stored, count = redact(dict.fromkeys(keys + others, "v"))
    assert len(keys) == count
    assert {**dict.fromkeys(keys, "[REDACTED:key_name]"), **dict.fromkeys(others, "v")} == stored


def test_redaction_url_password_keeps_user_and_host() -> None:
    """scheme://user:PASSWORD@host keeps the scheme, user, host and path."""
    stored, _ = redact({"c": "pg_dump postgresql://app:s3cr3t@db.internal:5432/app > x"})
    assert (
        "pg_dump postgresql://app:[REDACTED:url_password]@db.internal:5432/app > x" == stored["c"]
    )


def test_redaction_does_not_change_numbers_or_layout() -> None:
    """Only the secret's bytes change: an integer beyond 64 bits, whitespace and key order stay."""
    body = b'{ "big": 123456789012345678901234567890,\n  "c": "key ' + ANTHROPIC.encode() + b'" }'
    result = Redactor().redact(body)
    assert (
        b'{ "big": 123456789012345678901234567890,\n  "c": "key [REDACTED:anthropic_key]" }'
        == result.body
    )


def test_redaction_off_stores_everything_verbatim() -> None:
    """redact=false: no pattern and no key name applies."""
    body = orjson.dumps({"password": "hunter2", "c": f"{ANTHROPIC} {AWS_ID}"})
    result = Redactor(enabled=False).redact(body)
    assert (body, 0) == (result.body, result.count)


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    json_values,
    st.sampled_from(SECRETS),
    st.text(max_size=5),
    st.text(max_size=5),
)
def test_redaction_result_is_valid_json_without_the_secret_and_idempotent(
    value: Any, case: tuple[str, str, str], left: str, right: str
) -> None:
    """For any JSON value with a secret (in its context) spliced into a string, the result is
    valid JSON, the secret is gone, and redacting again changes nothing."""
    _, text, secret = case
    doc = {
        "payload": value,
        "command": f"{left}\n{text}\n{right}",
        "env": {"AWS_SECRET_ACCESS_KEY": AWS_SECRET},
    }
    redactor = Redactor()
    first = redactor.redact(orjson.dumps(doc))
    stored = orjson.loads(first.body)  # valid JSON
    assert secret not in json.dumps(stored, ensure_ascii=False)
    second = redactor.redact(first.body)
    assert (first.body, 0) == (second.body, second.count)


def test_redaction_markers_are_idempotent_for_every_kind() -> None:
    """Redacting text that already holds every kind of marker changes nothing."""
    redactor = Redactor(extra_patterns=[r"corp-[0-9]{6}"], extra_keys=["pin"])
    doc = {"c": [t for _, t, _ in SECRETS] + ["corp-123456"], "pin": "1234", "password": "x"}
    once = redactor.redact(orjson.dumps(doc))
    twice = redactor.redact(once.body)
    assert len(SECRETS) + 3 == once.count
    assert (once.body, 0) == (twice.body, twice.count)


def test_redaction_extra_patterns_and_keys() -> None:
    """Patterns from the settings redact their match (or its `secret` group); extra key names add
    to the defaults."""
    redactor = Redactor(
        extra_patterns=[r"corp-[0-9]{6}", r"ticket=(?P<secret>[A-Z]{3}-\d+)"],
        extra_keys=["pin", "otp-code"],
    )
    stored, count = redact(
        {
            "c": "id corp-123456 and ticket=ABC-42 done",
            "PIN": "0000",
            "otpCode": "9",
            "password": "p",
        },
        redactor,
    )
    assert 5 == count
    assert {
        "c": "id [REDACTED:custom] and ticket=[REDACTED:custom] done",
        "PIN": "[REDACTED:key_name]",
        "otpCode": "[REDACTED:key_name]",
        "password": "[REDACTED:key_name]",
    } == stored


@pytest.mark.parametrize(
    "pattern", [r"n[a-z]+", r".+", r"[a-z\\]{2,}", r"\d+", r"ét", r"^li", r"\w+$", r"\\"]
)
def test_redaction_extra_pattern_never_breaks_json(pattern: str) -> None:
    """A pattern from the settings is applied to string values only, widened to whole escape
    sequences: numbers, keys, quotes and escapes such as \\n survive as valid JSON; a \\u escape
    (\\u00e9) is matched as the character it stands for, as jsonb stores it."""
    body = b'{"n": 12345, "s": "line\\nnext \\"quoted\\" \\\\path \\u00e9t\\u00e9 12345", "k\\nx": [1, "ab"]}'
    result = Redactor(extra_patterns=[pattern]).redact(body)
    stored = orjson.loads(result.body)
    assert (12345, [1]) == (stored["n"], stored["k\nx"][:1])
    assert result.count >= 1
    again = Redactor(extra_patterns=[pattern]).redact(result.body)
    assert (result.body, 0) == (again.body, again.count)


def test_redaction_settings_build_the_redactor(tmp_path: Path) -> None:
    """redact_keys (comma-separated) and redact_patterns (a JSON array) from the environment, and
    TOML lists, reach the Redactor."""
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "SESSION_DB_REDACT_KEYS": "pin, otp",
        "SESSION_DB_REDACT_PATTERNS": '["corp-[0-9]{6}", "x{3,}"]',
    }
    s = config.load(env)
    assert (("pin", "otp"), ("corp-[0-9]{6}", "x{3,}")) == (s.redact_keys, s.redact_patterns)
    stored, count = redact({"pin": "1", "c": "corp-123456"}, wiring.redactor(s))
    assert ({"pin": "[REDACTED:key_name]", "c": "[REDACTED:custom]"}, 2) == (stored, count)

    toml = tmp_path / "c.toml"
    toml.write_text(
        'redact = false\ndrop_prompts = true\nredact_patterns = ["a{5}", "b,c"]\nredact_keys = ["pin"]\n'
    )
    s = config.load({"HOME": str(tmp_path), "SESSION_DB_CONFIG": str(toml)})
    assert (False, True, ("a{5}", "b,c"), ("pin",)) == (
        s.redact,
        s.drop_prompts,
        s.redact_patterns,
        s.redact_keys,
    )
    rows = {k: v for k, v, _ in config.describe(s)}
    assert ('["a{5}", "b,c"]', "pin", "False") == (
        rows["redact_patterns"],
        rows["redact_keys"],
        rows["redact"],
    )


def test_redaction_defaults_in_settings(tmp_path: Path) -> None:
    """By default secrets are redacted and nothing is dropped."""
    s = config.load({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert (True, (), (), False, False) == (
        s.redact,
        s.redact_keys,
        s.redact_patterns,
        s.drop_prompts,
        s.drop_tool_output,
    )


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("corp-([0-9]", "not a valid regular expression"),
        ("x*", "matches the empty string"),
        ('["a", 1]', "list"),
    ],
)
def test_redaction_invalid_pattern_is_a_config_error(tmp_path: Path, raw: str, why: str) -> None:
    """An unusable redact_patterns value stops start-up with exit 78, naming the setting and why."""
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "SESSION_DB_REDACT_PATTERNS": raw,
    }
    with pytest.raises(ConfigError) as excinfo:
        config.load(env)
    assert EX_CONFIG == excinfo.value.exit_code
    assert "SESSION_DB_REDACT_PATTERNS" in str(excinfo.value)
    assert "redact_patterns" in str(excinfo.value)
    assert why in str(excinfo.value)


def test_redaction_invalid_pattern_in_toml_names_the_file(tmp_path: Path) -> None:
    """The same error from the TOML file names the file."""
    toml = tmp_path / "c.toml"
    toml.write_text('redact_patterns = ["(unclosed"]\n')
    with pytest.raises(ConfigError, match=r"c\.toml: redact_patterns="):
        config.load({"HOME": str(tmp_path), "SESSION_DB_CONFIG": str(toml)})


# --- privacy switches ----------------------------------------------------------------------


def test_drop_fields_replaces_top_level_values_only() -> None:
    """Every top-level occurrence of a named field becomes null (duplicates too); the same name
    deeper down, other fields and brackets inside strings are untouched."""
    body = (
        b'{"prompt": "tell me", "a": {"prompt": "inner"}, "tool_response": {"x": [1, {"y": "]}"}]},'
        b' "n": 1, "prompt": 5, "z": null}'
    )
    out, dropped = drop_fields(body, ["prompt", "tool_response", "z"])
    assert (
        b'{"prompt": null, "a": {"prompt": "inner"}, "tool_response": null, "n": 1, "prompt": null, "z": null}'
        == out
    )
    assert ["/prompt", "/tool_response"] == dropped


@pytest.mark.parametrize(
    ("event", "payload", "switch", "expected_payload", "pointers"),
    [
        (
            "UserPromptSubmit",
            {"prompt": "my secret plan", "cwd": "/x"},
            "drop_prompts",
            {"prompt": None, "cwd": "/x"},
            ["/prompt"],
        ),
        (
            "UserPromptExpansion",
            {"prompt": "/deploy prod", "command_args": "prod", "command_name": "deploy"},
            "drop_prompts",
            {"prompt": None, "command_args": None, "command_name": "deploy"},
            ["/prompt", "/command_args"],
        ),
        (
            "PostToolUse",
            {
                "tool_input": {"command": "cat f"},
                "tool_response": {"stdout": "body"},
                "duration_ms": 3,
            },
            "drop_tool_output",
            {"tool_input": {"command": "cat f"}, "tool_response": None, "duration_ms": 3},
            ["/tool_response"],
        ),
        (
            "PostToolUseFailure",
            {"error": "Exit code 1\nsecret output", "is_interrupt": False},
            "drop_tool_output",
            {"error": None, "is_interrupt": False},
            ["/error"],
        ),
    ],
)
def test_privacy_switch_drops_its_fields(
    event: str,
    payload: dict[str, Any],
    switch: str,
    expected_payload: dict[str, Any],
    pointers: list[str],
) -> None:
    """With the switch on, the named fields of that event are stored as null and recorded as
    dropped:<pointer>; the row has no hash of the original."""
    ev = parse_with(
        orjson.dumps(payload),
        event,
        Redactor(
            drop_prompts=switch == "drop_prompts", drop_tool_output=switch == "drop_tool_output"
        ),
    )
    assert expected_payload == json.loads(ev.payload)
    assert [f"dropped:{p}" for p in pointers] == ev.transforms
    assert (0, None) == (ev.redactions, ev.payload_sha256)


def test_privacy_switches_leave_other_events_alone() -> None:
    """drop_prompts does not touch tool output, drop_tool_output does not touch prompts, and
    neither touches a PreToolUse's tool_input."""
    prompt = orjson.dumps({"prompt": "hello"})
    output = orjson.dumps({"tool_response": {"stdout": "x"}})
    pre = orjson.dumps({"tool_input": {"prompt": "sub-agent task"}})
    assert (
        parse_with(prompt, "UserPromptSubmit", Redactor(drop_tool_output=True)).transforms is None
    )
    assert parse_with(output, "PostToolUse", Redactor(drop_prompts=True)).transforms is None
    both = Redactor(drop_prompts=True, drop_tool_output=True)
    assert parse_with(pre, "PreToolUse", both).transforms is None


# --- events.parse --------------------------------------------------------------------------


def test_parse_redacts_and_records_transforms_and_count() -> None:
    """parse() with a redactor stores no secret, lists redacted and redacted:<kind> in transforms,
    counts the replacements, and keeps no hash of the original."""
    payload = orjson.dumps(
        {
            "session_id": "s",
            "tool_name": "Bash",
            "tool_input": {
                "command": f"AWS_SECRET_ACCESS_KEY={AWS_SECRET} ANTHROPIC_API_KEY={ANTHROPIC} x"
            },
        }
    )
    ev = parse_with(payload, "PreToolUse", Redactor())
    assert ev.payload is not None
    assert AWS_SECRET not in ev.payload
    assert ANTHROPIC not in ev.payload
    assert ["redacted", "redacted:anthropic_key", "redacted:aws_secret_access_key"] == ev.transforms
    assert (2, None, len(payload)) == (ev.redactions, ev.payload_sha256, ev.payload_bytes)
    assert ("s", "Bash") == (ev.claude_session_id, ev.tool_name)


def test_parse_without_redactor_or_switched_off_is_verbatim() -> None:
    """No redactor (unit tests of other concerns) and redact=false both store the payload as sent."""
    payload = orjson.dumps({"tool_input": {"command": f"echo {ANTHROPIC}"}, "password": "p"})
    for redactor in (None, Redactor(enabled=False)):
        ev = parse_with(payload, "PreToolUse", redactor)
        assert (payload.decode(), None, 0) == (ev.payload, ev.transforms, ev.redactions)


def test_parse_columns_come_from_the_redacted_payload() -> None:
    """A column copied from the payload (cwd) never holds what was redacted in the payload."""
    payload = orjson.dumps({"cwd": "/work/project-acme-7731", "session_id": "s"})
    ev = parse_with(payload, "Stop", Redactor(extra_patterns=[r"acme-\d+"]))
    assert "/work/project-[REDACTED:custom]" == ev.cwd
    assert "/work/project-[REDACTED:custom]" == json.loads(ev.payload)["cwd"]


def test_parse_redaction_after_nul_escaping_and_before_the_cap() -> None:
    """With NUL and an oversize field, the transforms run in order nul_escaped, redacted,
    truncated, and the stored text still unescapes to the redacted original."""
    payload = orjson.dumps({"a": f"x\x00{ANTHROPIC}", "big": "y" * 500})
    ev = parse_with(payload, "PostToolUse", Redactor(), field_cap_bytes=100)
    assert [
        "nul_escaped",
        "redacted",
        "redacted:anthropic_key",
        "truncated",
        "truncated:/big",
    ] == ev.transforms
    stored = unescape_nul(json.loads(ev.payload))
    assert "x\x00[REDACTED:anthropic_key]" == stored["a"]
    assert ev.payload_sha256 is None


def test_parse_plain_event_keeps_its_hash_rules() -> None:
    """A payload with nothing to redact is unchanged by the redactor: same text, no transforms,
    and a BOM-stripped one keeps the original's sha256 as before."""
    payload = b'{"session_id": "s", "hook_event_name": "Stop"}'
    ev = parse_with(payload, "Stop", Redactor())
    assert (payload.decode(), None) == (ev.payload, ev.transforms)
    bom = b"\xef\xbb\xbf" + payload
    ev = parse_with(bom, "Stop", Redactor())
    assert (["bom_stripped"], hashlib.sha256(bom).hexdigest()) == (ev.transforms, ev.payload_sha256)


@pytest.mark.parametrize("before", ["\n", "\t", "\x1b", "\x00", "é"])
def test_redaction_finds_a_token_right_after_an_escaped_character(before: str) -> None:
    """A generic token (sk-…) directly after a character that JSON escapes (newline, tab, ESC)
    or that parse() escapes (NUL) is still found: the escape's last letter is no word."""
    payload = orjson.dumps({"stdout": f"key{before}{OPENAI_PROJECT} end"})
    ev = parse_with(payload, "PostToolUse", Redactor())
    assert ev.payload is not None
    assert OPENAI_PROJECT not in ev.payload
    assert 1 == ev.redactions


# Issue 12 item 7: every spelling JSON allows for one secret is redacted (the stored value).
ESCAPED_SPELLINGS = [
    (
        "anthropic_key",
        '{"p":"use sk\\u002dant-api03-Jq7vR2kLm9Np4Tz1Wc8Yb3Hd6Jf0Gs5Ae2Uk7Io1 now"}',
    ),
    ("aws_access_key_id", '{"c":"export AWS_ACCESS_KEY_ID=\\u0041KIAIOSFODNN7EXAMPLE"}'),
    ("github_token", '{"t":"ghp\\u005fabcdefghijklmnopqrstuvwxyz0123456789"}'),
    (
        "aws_secret_access_key",
        '{"c":"aws_secret_access_key = wJalrXUtnFEMI\\/K7MDENG\\/bPxRfiCYEXAMPLEKEY"}',
    ),
    (
        "private_key",
        '{"k":"-----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\/IBAAKCAQEA\\nab\\/cd\\n'
        '-----END RSA PRIVATE KEY-----"}',
    ),
    ("key_name", '{"password" : "hunter2-hunter2"}'),
    ("key_name", '{"pass\\u0077ord":"hunter2-hunter2"}'),
    ("anthropic_key", '{"p":"\\u0073\\u006b-ant-api03-Jq7vR2kLm9Np4Tz1Wc8Yb3Hd6Jf0Gs5Ae2Uk7Io1"}'),
]


@pytest.mark.parametrize(("kind", "text"), ESCAPED_SPELLINGS)
def test_redaction_json_escaped_spellings_are_redacted(kind: str, text: str) -> None:
    """A secret spelled with optional JSON escapes (\\u002d, \\u0041, \\u005f, \\/) or with
    blanks before its key's colon is redacted like its plain spelling: the decoded value, which
    jsonb stores, holds no secret."""
    result = Redactor().redact(text.encode())
    decoded = orjson.dumps(orjson.loads(result.body)).decode()
    assert ({kind: 1}, True) == (dict(result.counts), f"[REDACTED:{kind}]" in decoded)
    secrets = ("Jq7vR2kLm9Np4", "IOSFODNN7", "abcdefghijklmnop", "bPxRfiCY", "IBAAKCAQ", "hunter2")
    for secret in secrets:
        assert secret not in decoded


def test_redaction_without_a_secret_keeps_the_text_as_sent() -> None:
    """Optional escapes alone change nothing: a payload without a secret is returned as sent."""
    body = b'{"s":"caf\\u00e9 \\/ ok", "n" : 1.50}'
    assert body is Redactor().redact(body).body


def test_redaction_authorization_then_30000_newlines_completes_and_redacts() -> None:
    """`authorization` and 30,000 newlines (60 KB of JSON text, no credential after them: the
    case that backtracked for minutes) redact to completion, and a real Basic credential in
    the same payload is still replaced."""
    stdout = "authorization" + "\n" * 30_000
    stderr = "Authorization: Basic dXNlcjpwYXNzd29yZA=="
    body = orjson.dumps({"tool_response": {"stdout": stdout, "stderr": stderr}})
    result = Redactor().redact(body)
    assert {"basic_auth": 1} == dict(result.counts)
    assert b"dXNlcjpwYXNzd29yZA" not in result.body


FRAGMENTS = [
    *(text for _, text in ESCAPED_SPELLINGS),
    "sk-ant-api03-Jq7vR2kLm9Np4Tz1Wc8Yb3Hd6Jf0Gs5Ae2Uk7Io1",
    "sk-Ab3dEf6hIj9kLm2nOp5qRs8t",
    "AKIAIOSFODNN7EXAMPLE",
    "Authorization: Basic dXNlcjpwYXNzd29yZA==",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
    "postgres://user:hunter2@db/x",
    "PGPASSWORD=hunter2hunter2",
    "--password=hunter2hunter2",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "xoxb-1234567890-abcdefghij",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
    " ",
    "\n",
    "=",
    ":",
    '"',
    "\\",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=6), st.sampled_from(["s", "password", "k"]))
def test_redaction_re2_candidates_never_skip_a_secret(parts: list[str], key: str) -> None:
    """The RE2 pass that lets a payload skip the rules is a superset of the rules: redacting
    with it gives the same text as running every rule unconditionally."""
    body = orjson.dumps({key: "".join(parts), "n": 1})
    assert exhaustive().redact(body).body == Redactor().redact(body).body


def exhaustive(**kw: Any) -> Redactor:
    """A Redactor whose RE2 passes match every text, so every rule always runs."""
    every = Redactor(**kw)
    every.candidates = re2.compile(b"")
    every._untouched = re2.compile(b"")
    return every


@pytest.mark.parametrize(
    "text",
    [t for _, t, _ in SECRETS]
    + NOT_SECRETS
    + [t for _, t in ESCAPED_SPELLINGS]
    + ['{"password" :\t"x"}', '{"a":"b\\/c"}', '{"plain":"text"}'],
)
def test_redaction_one_pass_skip_changes_nothing(text: str) -> None:
    """The one RE2 pass that lets a payload skip every rule (no candidate, no optional spelling)
    never skips one the rules would change: apply() gives the bytes and counts of running
    every rule."""
    body = text.encode() if text.startswith("{") else orjson.dumps({"t": text})
    fast, every = Redactor().apply(body, "PostToolUse"), exhaustive().apply(body, "PostToolUse")
    assert (every.body, every.count) == (fast.body, fast.count)


@given(st.text(max_size=200))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_redaction_one_pass_skip_agrees_on_any_text(text: str) -> None:
    """For arbitrary text in a payload, the skip gives what running every rule gives."""
    body = orjson.dumps({"text": text, "password": text} if len(text) % 2 else {"text": text})
    assert exhaustive().apply(body, "Stop").body == Redactor().apply(body, "Stop").body


def test_redaction_one_pass_skip_keeps_switches_and_custom_patterns() -> None:
    """A text with no built-in candidate still loses the fields a switch drops for its event,
    and still meets the patterns from the settings; with redaction off nothing changes."""
    body = b'{"prompt":"hello","tool_response":"x"}'
    assert Redactor(drop_prompts=True).apply(body, "UserPromptSubmit").dropped
    assert body == Redactor(drop_prompts=True).apply(body, "Stop").body
    assert Redactor(extra_patterns=["hel+o"]).apply(body, "Stop").count == 1
    assert body == Redactor(enabled=False).apply(body, "UserPromptSubmit").body
