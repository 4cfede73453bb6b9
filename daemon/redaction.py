"""Secret redaction and privacy switches: what never reaches the database.

events.parse hands the payload's JSON text (already validated by orjson, NUL-escaped) to a
Redactor before the field cap. Everything here works on the JSON text itself, never on a
decoded and re-encoded copy, so numbers (integers beyond 64 bits too), key order and
whitespace stay exactly as sent; only the replaced spans change.

Three mechanisms, each counted per replacement:

* **Patterns** for token formats (`DEFAULT_RULES`: Anthropic, OpenAI, GitHub, AWS, Slack,
  Stripe and Google keys, PEM private keys, `Bearer` tokens, HTTP Basic credentials, passwords
  in URLs, `PGPASSWORD=…`-style assignments). The secret part of a match becomes
  `[REDACTED:<kind>]`; the context (`Bearer `, the user and host of a URL, the variable name)
  stays. Secret parts never contain a JSON-special character, so a replacement cannot break
  the JSON text. Patterns from the settings (`redact_patterns`, kind `custom`) may match
  anything, so they are applied to each JSON string value separately and a match is widened to
  whole escape sequences (never half of a `\\n`).
* **Key names.** The string value of an object member whose key ends with one of the names
  (`DEFAULT_KEY_NAMES` plus `redact_keys`; any case; between the words of a name `_`, `-`, `.`
  or nothing) becomes `[REDACTED:key_name]`, at any depth. Matched where a key ends (`":`), as
  JSON writers print keys: a key spelled with `\\u` escapes or with blanks before its colon,
  and JSON escaped inside a string (`"{\\"password\\": …}"`), are left to the patterns.
* **Privacy switches.** `drop_prompts` and `drop_tool_output` replace whole top-level fields
  (`DROP_PROMPT_FIELDS`, `DROP_TOOL_OUTPUT_FIELDS`) of the events that carry them with `null`.

Speed and time: most payloads hold no secret, so the no-match scan is what counts. One RE2
pass (`candidates`: linear time, every built-in rule's leading literal in one automaton) decides
whether any built-in rule can match at all; only then do the rules run. The rules themselves use
Python `re` because they need look-behinds and a back-reference that RE2 lacks; their runs of
blanks are possessive so that none backtracks, and a payload that still takes longer than
`REDACTION_BUDGET_S` is quarantined rather than stored unredacted. Every built-in
pattern begins with a literal (`sk-`, `://`, `":`, `=` …) and puts its boundary checks in
look-behinds after it, so the regex engine skips to candidates at memchr speed; patterns that
ignore case run over one `bytes.lower()` copy (same offsets) and their spans are replaced in the
original. A payload without a match is returned unchanged, as the same object.

Idempotent: no pattern matches a marker and a value that already is a marker is left alone, so
redacting redacted text changes nothing.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from daemon.errors import RedactionBudgetError
from daemon.redaction_rules import (
    _CONTENT,
    CUSTOM_KIND,
    DEFAULT_KEY_NAMES,
    DEFAULT_RULES,
    DROP_PROMPT_FIELDS,
    DROP_TOOL_OUTPUT_FIELDS,
    DROPPED,
    MARKER,
    MARKER_FORMAT,
    REDACTED,
    REDACTION_BUDGET_S,
    Rule,
    candidates,
    compile_pattern,
    key_name_rule,
)

# Object keys and brackets, for the privacy switches and the patterns from the settings.
_STRING = re.compile(rb'"' + _CONTENT + rb'"')
_STRING_OR_BRACKET = re.compile(rb'"' + _CONTENT + rb'"|[\[\]{}]')
_COLON = re.compile(rb"\s*:\s*")
_SCALAR = re.compile(rb"[^\s,\]}]+")
_CONTEXTUAL = re.compile(r"\^|\$|\\[AZbB]|\(\?<?[!=]")  # anchors, boundaries, lookarounds
_ESCAPE = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|.)", re.DOTALL)


# Optional spellings that could hide a secret from the patterns: a `\\u` escape (`sk\\u002dant`,
# `\\u0041KIA`), an escaped slash (`\\/` in a PEM body or an AWS secret), blanks before a key's
# colon (`"password" : …`). Their presence sends the text through `canonical` first.
# Two searches with a literal first character: about six times faster than one alternation.
_OPTIONAL_ESCAPE = re.compile(rb"\\[u/]")
_BLANKS_BEFORE_COLON = re.compile(rb'"\s++:')
# A JSON string (group `s`) and the blanks before a colon that may follow it.
# The same two spellings in RE2 syntax, for the one-pass skip in `Redactor._clean` (JSON's
# blanks are space, tab, LF and CR; \v and \f, which Python's \s adds, cannot occur there).
_OPTIONAL_SPELLINGS_RE2 = (rb"\\[u/]", rb'"[\t\n\v\f\r ]+:')
_STRING_BEFORE_COLON = re.compile(rb'(?P<s>"' + _CONTENT + rb'")(?:\s++(?=:))?')


def canonical(body: bytes) -> bytes:
    """The JSON text with every string that holds an escape re-encoded as orjson writes it (only
    the escapes JSON requires) and no blanks before a colon. jsonb stores the same values, so
    patterns matched on this text see what is stored, however the sender spelled it."""

    def repl(m: re.Match[bytes]) -> bytes:
        token = m.group("s")
        if b"\\" not in token:
            return token
        try:
            return orjson.dumps(orjson.loads(token))
        except orjson.JSONDecodeError:  # a lone surrogate escape: left as sent
            return token

    return _STRING_BEFORE_COLON.sub(repl, body)


@dataclass(slots=True)
class Result:
    """What the Redactor did to one payload."""

    body: bytes
    counts: dict[str, int] = field(default_factory=dict)  # replacements per kind (a plain
    # dict: most payloads are clean, and a Counter costs a Python-level __init__ each)
    dropped: list[str] = field(default_factory=list)  # JSON pointers of dropped fields

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    @property
    def transforms(self) -> list[str]:
        """The row's transforms entries: dropped:<pointer>…, redacted, redacted:<kind>…."""
        out = [f"{DROPPED}:{p}" for p in self.dropped]
        if self.counts:
            out += [REDACTED, *(f"{REDACTED}:{k}" for k in sorted(self.counts))]
        return out




class Redactor:
    """Applies the redaction rules and privacy switches of one configuration."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        extra_keys: Iterable[str] = (),
        extra_patterns: Iterable[str] = (),
        drop_prompts: bool = False,
        drop_tool_output: bool = False,
        budget_s: float = REDACTION_BUDGET_S,
    ) -> None:
        extra_keys, extra_patterns = tuple(extra_keys), tuple(extra_patterns)
        # The arguments again, to build the same Redactor in a worker process (daemon.parse_pool).
        self.options: dict[str, Any] = {
            "enabled": enabled,
            "extra_keys": extra_keys,
            "extra_patterns": extra_patterns,
            "drop_prompts": drop_prompts,
            "drop_tool_output": drop_tool_output,
            "budget_s": budget_s,
        }
        self.enabled = enabled
        self.budget_s = budget_s
        keys = key_name_rule((*DEFAULT_KEY_NAMES, *extra_keys))
        self.candidates = candidates((*DEFAULT_KEY_NAMES, *extra_keys))
        # candidates plus the optional spellings: no match means no built-in rule can apply.
        self._untouched = candidates((*DEFAULT_KEY_NAMES, *extra_keys), _OPTIONAL_SPELLINGS_RE2)
        self.rules: tuple[Rule, ...] = (
            (() if keys is None else (keys,))
            + DEFAULT_RULES
            + tuple(
                Rule(
                    CUSTOM_KIND,
                    compile_pattern(p),
                    custom=True,
                    prefilter=not _CONTEXTUAL.search(p),
                )
                for p in extra_patterns
            )
        )
        self._custom = bool(extra_patterns)
        drops: dict[str, tuple[str, ...]] = {}
        for on, table in (
            (drop_prompts, DROP_PROMPT_FIELDS),
            (drop_tool_output, DROP_TOOL_OUTPUT_FIELDS),
        ):
            if on:
                for event, fields in table.items():
                    drops[event] = drops.get(event, ()) + fields
        self.drops: Mapping[str, tuple[str, ...]] = drops

    @property
    def active(self) -> bool:
        """Whether this configuration can change any payload at all."""
        return self.enabled or bool(self.drops)

    def _clean(self, body: bytes) -> bool:
        """No pattern from the settings, and no candidate of a built-in rule nor an optional
        spelling in the text: no rule can change it (one RE2 pass)."""
        return not self._custom and self._untouched.search(body) is None

    def apply(self, body: bytes, event_type: str) -> Result:
        """Drop the fields the privacy switches name, then redact secrets."""
        fields = self.drops.get(event_type)
        if not fields and (not self.enabled or self._clean(body)):
            return Result(body)  # the common case: one RE2 pass, nothing to do
        result = Result(body)
        if fields:
            result.body, result.dropped = drop_fields(result.body, fields)
        if self.enabled:
            result.body = self._redact(result.body, result.counts, checked=not fields)
        return result

    def redact(self, body: bytes) -> Result:
        """Secrets in one JSON text replaced by markers (no fields dropped)."""
        result = Result(body)
        if self.enabled:
            result.body = self._redact(body, result.counts)
        return result

    def _redact(self, body: bytes, counts: dict[str, int], *, checked: bool = False) -> bytes:
        """Secrets replaced in the canonical text when the sender used optional escapes, so the
        returned text may be the canonical one; unchanged (the same object) without a secret.
        Raises RedactionBudgetError past `budget_s` (checked between rules). `checked`: the
        caller already found `body` not clean."""
        if not checked and self._clean(body):
            return body
        sent = body
        before = sum(counts.values())
        if _OPTIONAL_ESCAPE.search(body) or _BLANKS_BEFORE_COLON.search(body):
            body = canonical(body)
        deadline = time.monotonic() + self.budget_s
        builtin = self.candidates.search(body) is not None  # one RE2 pass decides
        lowered: bytes | None = None
        for rule in self.rules:
            if not builtin and not rule.custom:
                continue
            if time.monotonic() > deadline:
                raise RedactionBudgetError(
                    f"redaction took over {self.budget_s} s ({len(body)} bytes); not stored"
                )
            if rule.custom:
                if not rule.prefilter or rule.pattern.search(body):
                    body = _redact_in_strings(body, rule, counts)
                    lowered = None
                continue
            if rule.lower and lowered is None:
                lowered = body.lower()  # ASCII only: the same offsets as body
            view = lowered if rule.lower and lowered is not None else body
            first = rule.pattern.search(view)  # the common case ends here, without an iterator
            if first is None:
                continue
            pieces: list[bytes] = []
            pos = 0
            for m in rule.pattern.finditer(view, first.start()):
                start, end = _secret_span(m)
                if start == end or MARKER.fullmatch(body, start, end):
                    continue
                pieces += [body[pos:start], MARKER_FORMAT.format(kind=rule.kind).encode()]
                pos = end
                counts[rule.kind] = counts.get(rule.kind, 0) + 1
            if pieces:
                pieces.append(body[pos:])
                body = b"".join(pieces)
                lowered = None
        return body if sum(counts.values()) > before else sent


def _secret_span(m: re.Match[bytes]) -> tuple[int, int]:
    if "secret" in m.re.groupindex:
        start, end = m.span("secret")
        if start >= 0:
            return start, end
    return m.span()


def _redact_in_strings(body: bytes, rule: Rule, counts: dict[str, int]) -> bytes:
    """Apply a pattern from the settings to each JSON string value (keys stay) as it appears in
    the text, widening every match to whole escape sequences, so that no replacement can break
    the JSON text. `^` and `$` anchor at the string's start and end."""
    marker = MARKER_FORMAT.format(kind=rule.kind).encode()
    pieces: list[bytes] = []
    pos = 0
    for tok in _STRING.finditer(body):
        if _COLON.match(body, tok.end()):
            continue  # a key
        lo = tok.start() + 1
        inner = body[lo : tok.end() - 1]
        if not rule.pattern.search(inner):
            continue
        escapes = [e.span() for e in _ESCAPE.finditer(inner)] if b"\\" in inner else []
        starts = [s for s, _ in escapes]
        protected = [mk.span() for mk in MARKER.finditer(inner)]
        last = 0
        for m in rule.pattern.finditer(inner):
            start, end = _secret_span(m)
            if start == end:
                continue
            if escapes:
                start, end = _widen(escapes, starts, start, end)
            if start < last or any(s < end and start < e for s, e in protected):
                continue
            pieces += [body[pos : lo + start], marker]
            pos = lo + end
            last = end
            counts[rule.kind] = counts.get(rule.kind, 0) + 1
    if not pieces:
        return body
    pieces.append(body[pos:])
    return b"".join(pieces)


def _widen(
    escapes: list[tuple[int, int]], starts: list[int], start: int, end: int
) -> tuple[int, int]:
    """[start, end) grown so that it cuts no escape sequence (spans sorted, disjoint)."""
    i = bisect.bisect_right(starts, start) - 1
    if i >= 0 and escapes[i][0] < start < escapes[i][1]:
        start = escapes[i][0]
    j = bisect.bisect_right(starts, end - 1) - 1
    if j >= 0 and escapes[j][0] <= end - 1 < escapes[j][1]:
        end = escapes[j][1]
    return start, end


def drop_fields(body: bytes, fields: Iterable[str]) -> tuple[bytes, list[str]]:
    """Replace the values of the named top-level members with null (all duplicates too); return
    the new text and the JSON pointers of the members that had a non-null value."""
    wanted = set(fields)
    spans: list[tuple[int, int]] = []
    dropped: list[str] = []
    depth = 0
    tokens = _STRING_OR_BRACKET.finditer(body)
    for m in tokens:
        first = body[m.start()]
        if first in b"[{":
            depth += 1
            continue
        if first in b"]}":
            depth -= 1
            continue
        if depth != 1:
            continue
        colon = _COLON.match(body, m.end())
        if colon is None:
            continue
        key = orjson.loads(m.group())
        if key not in wanted:
            continue
        start = colon.end()
        opener = body[start]
        if opener == ord('"'):
            end = next(tokens).end()
        elif opener in b"[{":
            level = 0
            end = start
            for inner in tokens:
                c = body[inner.start()]
                if c in b"[{":
                    level += 1
                elif c in b"]}":
                    level -= 1
                    if level == 0:
                        end = inner.end()
                        break
        else:
            scalar = _SCALAR.match(body, start)
            end = scalar.end() if scalar else start
        if body[start:end] != b"null":
            spans.append((start, end))
            pointer = "/" + key.replace("~", "~0").replace("/", "~1")
            if pointer not in dropped:
                dropped.append(pointer)
    if not spans:
        return body, []
    pieces: list[bytes] = []
    pos = 0
    for start, end in spans:
        pieces += [body[pos:start], b"null"]
        pos = end
    pieces.append(body[pos:])
    return b"".join(pieces), dropped
