"""daemon.events: the spool file format, parse() and the reversible NUL escaping.

Each test states one invariant of docs/design/spool.md §2, §4, §6, §5 and §7 rows 13 and 24.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import events
from daemon.events import BadEvent, Event, escape_nul, parse, unescape_nul
from tests.support.spoolwriter import encode

REPO = Path(__file__).resolve().parents[2]
HOOKS = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks"
ALL_PAYLOADS = sorted(HOOKS.glob("all/*/*.json"))

NAME = "1795436016586690803.P4242R0123456789abcdef.build-01"
HOST = "build-01"
RECEIVED_NS = 1_795_436_016_586_690_803
MTIME_NS = 1_700_000_000_123_456_789
SID = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def wrap(payload: bytes, *, event: str | None = None, env: dict[str, str] | None = None) -> bytes:
    """A spool file as the hook writes it."""
    return encode(payload, event=event, received_ns=RECEIVED_NS, host=HOST, env=env)


def parse_file(data: bytes) -> Event:
    return parse(NAME, data, default_host="fallback-host", mtime_ns=MTIME_NS)


def text_or_none(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def nested_arrays(depth: int, leaf: bytes) -> bytes:
    return b"[" * depth + leaf + b"]" * depth


# --- fixture payloads --------------------------------------------------------------------


def test_parse_fixture_corpus_is_complete() -> None:
    """The replay corpus holds every payload of the nine captured scenarios."""
    assert 147 == len(ALL_PAYLOADS)


@pytest.mark.parametrize("path", ALL_PAYLOADS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parse_fixture_payload_extracts_fields(path: Path) -> None:
    """Every real Claude Code payload, wrapped in the header, parses with its fields extracted."""
    raw = path.read_bytes()
    obj = json.loads(raw)
    ev = parse_file(wrap(raw, event=obj["hook_event_name"]))

    assert NAME == ev.spool_name
    assert HOST == ev.host
    assert RECEIVED_NS == ev.received_ns
    assert obj["hook_event_name"] == ev.event_type
    assert obj["session_id"] == ev.claude_session_id
    assert text_or_none(obj, "agent_id") == ev.claude_agent_id
    assert text_or_none(obj, "agent_type") == ev.agent_type
    assert text_or_none(obj, "tool_name") == ev.tool_name
    assert text_or_none(obj, "tool_use_id") == ev.tool_use_id
    assert text_or_none(obj, "prompt_id") == ev.prompt_id
    assert obj["cwd"] == ev.cwd
    assert text_or_none(obj, "model") == ev.model
    assert obj["transcript_path"] == ev.transcript_path
    assert obj == json.loads(ev.payload or "null")
    assert len(raw) == ev.payload_bytes
    assert ev.payload_sha256 is None
    assert ev.transforms is None


def test_parse_subagent_payload_keeps_agent_identity() -> None:
    """A payload fired inside a subagent yields its agent_id and agent_type."""
    raw = (HOOKS / "PreToolUse__subagent.json").read_bytes()
    ev = parse_file(wrap(raw, event="PreToolUse"))
    assert ("a4559b86e76dea3ec", "general-purpose") == (ev.claude_agent_id, ev.agent_type)
    assert ("Bash", "toolu_e2e_sub_01_bash") == (ev.tool_name, ev.tool_use_id)


def test_parse_session_start_extracts_model() -> None:
    """SessionStart's model field becomes Event.model."""
    raw = (HOOKS / "all" / "tui" / "01_SessionStart.json").read_bytes()
    assert "claude-sonnet-4-5-20250929" == parse_file(wrap(raw, event="SessionStart")).model


def test_parse_empty_agent_type_with_agent_id_is_none() -> None:
    """The compaction fork's agent_type "" is stored as None, not taken from the env header."""
    raw = (HOOKS / "all" / "compact" / "04_SubagentStop.json").read_bytes()
    ev = parse_file(wrap(raw, event="SubagentStop", env={"SESSION_DB_AGENT_TYPE": "reviewer"}))
    assert "a63535f54dd6de1ea" == ev.claude_agent_id
    assert ev.agent_type is None


# --- event name, env header fields -----------------------------------------------------


def test_parse_event_prefers_header_argument() -> None:
    """The event name given to the hook on argv wins over the payload's hook_event_name."""
    ev = parse_file(wrap(b'{"hook_event_name": "Stop"}', event="StopFailure"))
    assert "StopFailure" == ev.event_type


def test_parse_event_falls_back_to_hook_event_name() -> None:
    """Without an event header the payload's hook_event_name names the event."""
    ev = parse_file(wrap(b'{"hook_event_name": "Stop"}'))
    assert "Stop" == ev.event_type


def test_parse_event_unknown_without_any_name() -> None:
    """Without a header event or hook_event_name the event is "unknown"."""
    assert "unknown" == parse_file(wrap(b'{"session_id": "s"}')).event_type
    assert events.UNKNOWN_EVENT == parse_file(wrap(b"")).event_type


def test_parse_session_id_falls_back_to_env_header() -> None:
    """A payload without session_id takes CLAUDE_CODE_SESSION_ID from the env header."""
    ev = parse_file(wrap(b'{"hook_event_name": "Stop"}', env={"CLAUDE_CODE_SESSION_ID": SID}))
    assert SID == ev.claude_session_id


def test_parse_session_id_from_payload_beats_env_header() -> None:
    """The payload's session_id wins over the env header."""
    ev = parse_file(wrap(b'{"session_id": "from-payload"}', env={"CLAUDE_CODE_SESSION_ID": SID}))
    assert "from-payload" == ev.claude_session_id


def test_parse_env_header_fields_extracted() -> None:
    """CLAUDE_PROJECT_DIR, SESSION_DB_SESSION and SESSION_DB_AGENT_TYPE come from the env header."""
    env = {
        "CLAUDE_PROJECT_DIR": "/tmp/ccrun/work/main",
        "SESSION_DB_SESSION": "fix-login",
        "SESSION_DB_AGENT_TYPE": "reviewer",
    }
    ev = parse_file(wrap(b'{"session_id": "s"}', event="Stop", env=env))
    assert ("/tmp/ccrun/work/main", "fix-login", "reviewer") == (
        ev.project_dir,
        ev.workflow_slug,
        ev.agent_type,
    )


def test_parse_empty_payload_accepted_with_header() -> None:
    """An empty stdin (StopFailure quirk) is still an event: payload None, names from the header."""
    ev = parse_file(wrap(b"", event="StopFailure", env={"CLAUDE_CODE_SESSION_ID": SID}))
    assert ("StopFailure", SID) == (ev.event_type, ev.claude_session_id)
    assert ev.payload is None
    assert 0 == ev.payload_bytes
    assert ev.transforms is None


def test_parse_whitespace_payload_accepted_as_empty() -> None:
    """A payload of whitespace only is an empty payload."""
    ev = parse_file(wrap(b" \n\t\r\n", event="Stop"))
    assert ev.payload is None
    assert 5 == ev.payload_bytes


# --- header-less files (foreign writers) -------------------------------------------------


def test_parse_headerless_object_uses_mtime_and_default_host() -> None:
    """A header-less JSON object is accepted; its receive time is the file's mtime."""
    raw = (HOOKS / "Stop.json").read_bytes()
    ev = parse_file(raw)
    assert (MTIME_NS, "fallback-host", "Stop") == (ev.received_ns, ev.host, ev.event_type)
    assert json.loads(raw) == json.loads(ev.payload or "null")


@pytest.mark.parametrize(
    "data", [b'{"session_id": "s", "cwd": "/x', b"not json at all", b"\xff\xfe{"]
)
def test_parse_headerless_garbage_is_retryable(data: bytes) -> None:
    """Unparseable header-less bytes may be a foreign writer mid-write: BadEvent, retryable."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(data)
    assert ("json_decode", True) == (excinfo.value.reason, excinfo.value.retryable)


def test_parse_headerless_empty_file_is_retryable() -> None:
    """An empty header-less file may be a foreign writer that has not written yet: retryable."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(b"")
    assert ("empty", True) == (excinfo.value.reason, excinfo.value.retryable)


# --- bad content corpus (§10 row 13) -----------------------------------------------------


def test_parse_bom_is_stripped_and_recorded() -> None:
    """A UTF-8 BOM is dropped, marked bom_stripped, and the original bytes' sha256 is kept."""
    body = b'{"session_id": "s", "hook_event_name": "Stop"}'
    payload = events.UTF8_BOM + body
    ev = parse_file(wrap(payload))
    assert body.decode() == ev.payload
    assert ["bom_stripped"] == ev.transforms
    assert sha256(payload) == ev.payload_sha256
    assert len(payload) == ev.payload_bytes
    assert "s" == ev.claude_session_id


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": "\xff"}',
        b'{"a": "\xc3"}',
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        b'{"\xe2\x82": 1}',
    ],
)
def test_parse_invalid_utf8_is_permanent(payload: bytes) -> None:
    """Invalid UTF-8 in a headed file is a permanent json_decode error."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(wrap(payload, event="Stop"))
    assert ("json_decode", False) == (excinfo.value.reason, excinfo.value.retryable)


@pytest.mark.parametrize("escape", [rb"\ud800", rb"\udfff", rb"\udc00\ud800", rb"\ud83d x"])
def test_parse_lone_surrogate_escape_rejected(escape: bytes) -> None:
    """A \\u escape with an unpaired surrogate (rejected by jsonb) is refused at parse time."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(wrap(b'{"a": "' + escape + b'"}', event="Stop"))
    assert "json_decode" == excinfo.value.reason


def test_parse_paired_surrogate_escape_accepted() -> None:
    """A correctly paired surrogate escape is a normal character."""
    ev = parse_file(wrap(rb'{"a": "\ud83d\ude00"}', event="Stop"))
    assert {"a": "\U0001f600"} == json.loads(ev.payload or "null")


def test_parse_nul_escaped_with_original_hash() -> None:
    """\\u0000 is stored escaped (␀0), marked nul_escaped, with the original sha256 and size."""
    payload = (
        b'{"session_id": "s", "tool_response": {"stdout": "a\\u0000b", "k\\u0000": "\xe2\x90\x80"}}'
    )
    ev = parse_file(wrap(payload, event="PostToolUse"))
    assert ev.payload is not None
    assert "\x00" not in ev.payload
    assert "\\u0000" not in ev.payload
    assert ["nul_escaped"] == ev.transforms
    assert sha256(payload) == ev.payload_sha256
    assert len(payload) == ev.payload_bytes
    stored = json.loads(ev.payload)
    assert {"session_id": "s", "tool_response": {"stdout": "a␀0b", "k␀0": "␀␀"}} == stored
    assert json.loads(payload) == unescape_nul(stored)


def test_parse_escaped_backslash_before_u0000_is_not_nul() -> None:
    """A literal backslash followed by u0000 is text, not NUL: stored unchanged."""
    payload = rb'{"a": "\\u0000"}'
    ev = parse_file(wrap(payload, event="Stop"))
    assert payload.decode() == ev.payload
    assert ev.transforms is None


def test_parse_nul_escaping_keeps_large_integers() -> None:
    """Re-serialising a NUL payload changes only the strings: integers keep every digit."""
    payload = b'{"a": "\\u0000", "n": 12345678901234567890123, "m": -9223372036854775809}'
    ev = parse_file(wrap(payload, event="Stop"))
    assert ["nul_escaped"] == ev.transforms
    assert json.loads(payload) == unescape_nul(json.loads(ev.payload or "null"))


def test_parse_bom_and_nul_both_recorded() -> None:
    """A payload with both a BOM and NUL lists both transformations."""
    payload = events.UTF8_BOM + b'{"a": "\\u0000"}'
    ev = parse_file(wrap(payload, event="Stop"))
    assert {"bom_stripped", "nul_escaped"} == set(ev.transforms or [])
    assert sha256(payload) == ev.payload_sha256


@pytest.mark.parametrize("depth", [300, 1020])
def test_parse_nul_in_deep_valid_json_never_crashes(depth: int) -> None:
    """NUL nested deep in JSON that orjson accepts yields an Event or BadEvent, nothing else."""
    payload = b'{"a": ' + nested_arrays(depth, b'"\\u0000"') + b"}"
    try:
        ev = parse_file(wrap(payload, event="Stop"))
    except BadEvent:
        return
    assert ["nul_escaped"] == ev.transforms


@pytest.mark.parametrize("payload", [b"[]", b"[1, 2]", b"1", b'"text"', b"null", b"true", b"-0.5"])
def test_parse_non_object_json_rejected(payload: bytes) -> None:
    """Top-level JSON that is not an object is a permanent not_an_object error."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(wrap(payload, event="Stop"))
    assert ("not_an_object", False) == (excinfo.value.reason, excinfo.value.retryable)


def test_parse_headerless_non_object_rejected() -> None:
    """A header-less file holding a JSON array is rejected as not_an_object."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(b"[1, 2, 3]")
    assert "not_an_object" == excinfo.value.reason


def test_parse_nesting_deeper_than_1024_rejected() -> None:
    """Nesting beyond 1024 levels is a permanent json_decode error."""
    payload = b'{"a": ' + nested_arrays(1100, b"1") + b"}"
    with pytest.raises(BadEvent) as excinfo:
        parse_file(wrap(payload, event="Stop"))
    assert ("json_decode", False) == (excinfo.value.reason, excinfo.value.retryable)


def test_parse_nesting_of_1000_accepted() -> None:
    """Deep but legal nesting without NUL is stored as received."""
    payload = b'{"a": ' + nested_arrays(1000, b"1") + b"}"
    ev = parse_file(wrap(payload, event="Stop"))
    assert payload.decode() == ev.payload


def test_parse_duplicate_keys_last_wins() -> None:
    """With duplicate keys the last value wins, as in jsonb."""
    payload = (
        b'{"session_id": "first", "tool_name": "Bash", "session_id": "second", "tool_name": "Read"}'
    )
    ev = parse_file(wrap(payload, event="PreToolUse"))
    assert ("second", "Read") == (ev.claude_session_id, ev.tool_name)
    assert {"session_id": "second", "tool_name": "Read"} == orjson.loads(ev.payload or "null")


@pytest.mark.parametrize(
    "data",
    [
        b"session-db-spool: 1\nreceived-ns: 1795436016586690803\nhost: h",
        b"session-db-spool: 1\nreceived-ns: 1795436016586690803\n",
        b"session-db-spool: ",
    ],
)
def test_parse_truncated_header_rejected(data: bytes) -> None:
    """A header that no empty line ends is a truncated_header error."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(data)
    assert "truncated_header" == excinfo.value.reason


def test_parse_header_line_without_separator_rejected() -> None:
    """A header line without ': ' is a bad_header error."""
    with pytest.raises(BadEvent) as excinfo:
        parse_file(b"session-db-spool: 1\nreceived-ns: 5\ngarbage\n\n{}")
    assert "bad_header" == excinfo.value.reason


@pytest.mark.parametrize("version", [b"2", b"0", b"", b"1.0", b"one"])
def test_parse_unsupported_spool_version_rejected(version: bytes) -> None:
    """Any spool version other than 1 is refused with unsupported_spool_version."""
    data = b"session-db-spool: " + version + b"\nreceived-ns: 5\nhost: h\n\n{}"
    with pytest.raises(BadEvent) as excinfo:
        parse_file(data)
    assert ("unsupported_spool_version", False) == (excinfo.value.reason, excinfo.value.retryable)


@pytest.mark.parametrize("received", [b"-1", str(events.MAX_RECEIVED_NS + 1).encode(), b"9" * 40])
def test_parse_received_ns_out_of_range_rejected(received: bytes) -> None:
    """received-ns outside [0, 9999-12-31T23:59:59Z] is a bad_header error."""
    data = b"session-db-spool: 1\nreceived-ns: " + received + b"\nhost: h\n\n{}"
    with pytest.raises(BadEvent) as excinfo:
        parse_file(data)
    assert "bad_header" == excinfo.value.reason


@pytest.mark.parametrize("received", [b"", b"abc", b"1.5", b"0x10"])
def test_parse_received_ns_not_integer_rejected(received: bytes) -> None:
    """A received-ns that is not an integer is a bad_header error."""
    data = b"session-db-spool: 1\nreceived-ns: " + received + b"\nhost: h\n\n{}"
    with pytest.raises(BadEvent) as excinfo:
        parse_file(data)
    assert "bad_header" == excinfo.value.reason


@pytest.mark.parametrize("received", [0, events.MAX_RECEIVED_NS])
def test_parse_received_ns_bounds_accepted(received: int) -> None:
    """Both ends of the received-ns range are accepted."""
    data = encode(b"{}", event="Stop", received_ns=received, host="h")
    assert received == parse_file(data).received_ns


def test_parse_missing_host_uses_default_host() -> None:
    """A header without host takes the daemon's default host."""
    ev = parse_file(b"session-db-spool: 1\nreceived-ns: 5\n\n{}")
    assert "fallback-host" == ev.host


def test_parse_header_values_never_carry_nul() -> None:
    """NUL or invalid UTF-8 in header values is replaced, so text columns accept them."""
    data = b"session-db-spool: 1\nreceived-ns: 5\nhost: h\x00\xff\nevent: St\x00op\n\n{}"
    ev = parse_file(data)
    assert "\x00" not in ev.host
    assert "\x00" not in ev.event_type


# --- properties ---------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
SPECIALS = st.sampled_from(["\x00", "\u2400", "0", "a"])
# Any code point, lone surrogates included (escape_nul must not care) ...
any_text = st.text(alphabet=st.one_of(SPECIALS, st.characters()), max_size=12)
# ... and text that can be encoded as UTF-8, as a real payload's strings are.
nul_text = st.text(alphabet=st.one_of(SPECIALS, st.characters(codec="utf-8")), max_size=12)


def json_like(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(json_scalars, text),
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=12,
    )


json_values = json_like(nul_text)
any_json_values = json_like(any_text)


def _mangle(doc: Any, ensure_ascii: bool, bom: bool, cut: int | None) -> bytes:
    data = json.dumps(doc, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    if cut is not None:
        data = data[:cut]
    return (events.UTF8_BOM if bom else b"") + data


payload_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        _mangle,
        st.dictionaries(nul_text, json_values, max_size=5),
        st.booleans(),
        st.booleans(),
        st.one_of(st.none(), st.integers(min_value=0, max_value=200)),
    ),
    st.builds(_mangle, json_values, st.booleans(), st.booleans(), st.none()),
)


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _check_outcome(data: bytes) -> None:
    try:
        ev = parse_file(data)
    except BadEvent:
        return
    if ev.payload is None:
        return
    assert "\x00" not in ev.payload
    decoded = orjson.loads(ev.payload)  # strict: valid UTF-8, paired surrogates
    assert isinstance(decoded, dict)
    assert not _contains_nul(decoded)


@PROPERTY_SETTINGS
@given(payload=payload_bytes, headed=st.booleans())
def test_parse_arbitrary_payload_is_event_or_bad_event(payload: bytes, headed: bool) -> None:
    """Any payload bytes give an Event (payload None or NUL-free JSON text) or BadEvent."""
    _check_outcome(wrap(payload, event="PostToolUse") if headed else payload)


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=200))
def test_parse_arbitrary_header_bytes_is_event_or_bad_event(data: bytes) -> None:
    """Arbitrary bytes after the spool magic never raise anything but BadEvent."""
    _check_outcome(events.HEADER_MAGIC + data)


@PROPERTY_SETTINGS
@given(doc=st.dictionaries(nul_text, json_values, max_size=5))
def test_parse_stored_payload_reverses_to_original(doc: dict[str, Any]) -> None:
    """Unescaping a stored nul_escaped payload gives back exactly the original JSON value."""
    payload = json.dumps(doc).encode()
    ev = parse_file(wrap(payload, event="Stop"))
    stored = json.loads(ev.payload or "null")
    if ev.transforms == ["nul_escaped"]:
        assert sha256(payload) == ev.payload_sha256
        stored = unescape_nul(stored)
    assert doc == stored


@PROPERTY_SETTINGS
@given(value=any_json_values)
def test_escape_nul_roundtrip(value: Any) -> None:
    """unescape_nul(escape_nul(x)) == x for JSON-like values with arbitrary text."""
    assert value == unescape_nul(escape_nul(value))


@PROPERTY_SETTINGS
@given(value=any_json_values)
def test_escape_nul_output_has_no_nul(value: Any) -> None:
    """escape_nul leaves no NUL character in any string, keys included."""
    assert not _contains_nul(escape_nul(value))


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("\x00", "␀0"),
        ("␀", "␀␀"),
        ("␀0", "␀␀0"),
        ("\x00␀", "␀0␀␀"),
        ("a\x00\x00b", "a␀0␀0b"),
        ("plain", "plain"),
    ],
)
def test_escape_nul_documented_rule(raw: str, escaped: str) -> None:
    """U+2400 → ␀␀ and NUL → ␀0, exactly as the module documents; the inverse restores the text."""
    assert escaped == escape_nul(raw)
    assert raw == unescape_nul(escaped)
