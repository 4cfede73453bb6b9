"""events.cap_strings: every string fits the cap, nothing else changes, cuts are reported."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.events import cap_strings, parse
from tests.support.spoolwriter import encode

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=200),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@settings(max_examples=200, database=None)
@given(json_values, st.integers(1, 64))
def test_cap_strings_fit_the_cap_and_are_prefixes(value: Any, cap: int) -> None:
    """Each string is a prefix of the original, at most `cap` UTF-8 bytes; a cut is reported iff it happened."""
    capped, cut = cap_strings(value, cap)
    before, after = strings(value), strings(capped)
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert old.startswith(new)
        assert len(new.encode("utf-8", "surrogatepass")) <= cap
    assert len(cut) == sum(old != new for old, new in zip(before, after, strict=True))


def test_cap_strings_reports_json_pointers() -> None:
    """Cut fields are named by JSON pointer, with ~ and / escaped."""
    value = {"a/b": ["x" * 10, "y"], "c~": {"d": "z" * 10}}
    capped, cut = cap_strings(value, 4)
    assert {"a/b": ["xxxx", "y"], "c~": {"d": "zzzz"}} == capped
    assert ["/a~1b/0", "/c~0/d"] == cut


def test_parse_without_cap_keeps_payload_text_verbatim() -> None:
    """With no cap the stored text is the received text (big integers and key order intact)."""
    payload = b'{"n": 123456789012345678901234567890, "s": "' + b"x" * 5000 + b'"}'
    event = parse(
        "n", encode(payload, event="Stop", received_ns=1, host="h"), default_host="h", mtime_ns=1
    )
    assert payload.decode() == event.payload
    assert None is event.transforms
