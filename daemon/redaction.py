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
import itertools
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
import re2

from daemon.errors import RedactionBudgetError

if TYPE_CHECKING:
    from daemon.config import Settings

# Longest one payload may spend in redaction (checked between rules); past it the event is
# quarantined `redaction_budget`, never stored unredacted. The rules are linear, so only a
# payload of hundreds of megabytes on a loaded machine could reach it.
REDACTION_BUDGET_S = 5.0
MARKER_FORMAT = "[REDACTED:{kind}]"
MARKER = re.compile(rb"\[REDACTED:[a-z0-9_]+\]")
KEY_KIND = "key_name"
CUSTOM_KIND = "custom"
REDACTED = "redacted"  # the transform every redacted row carries, next to redacted:<kind>
DROPPED = "dropped"  # dropped:<JSON pointer> for each field a privacy switch removed

# Object keys whose string value is a secret, matched as the end of the key: "db_password",
# "clientSecret", "X-Api-Key", "aws_secret_access_key" and "Proxy-Authorization" all count.
# Words are separated by "_" here; in a key "_", "-", "." or nothing may separate them.
DEFAULT_KEY_NAMES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "secret_key",
    "secret_access_key",
    "api_key",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "session_token",
    "bearer_token",
    "api_token",
    "private_key",
    "authorization",
    "cookie",
)
KEY_WORD_SEPARATORS = ("", "_", "-", ".")
KEY_FILTER_WIDTH = 3  # characters of a key's end checked first, before every full spelling

# Top-level fields the privacy switches replace with null, per event type.
DROP_PROMPT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "UserPromptSubmit": ("prompt",),
    "UserPromptExpansion": ("prompt", "command_args"),
}
DROP_TOOL_OUTPUT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "PostToolUse": ("tool_response",),
    "PostToolUseFailure": ("error",),
}


def _starts_word(prefix: bytes, word: bytes) -> bytes:
    """`prefix` (a literal, matched first) plus a check that it starts a word: no `word`
    character before it, or right after an escape whose last character would otherwise look
    like part of it (\\n, \\u001b, an escaped NUL ␀0)."""
    p = re.escape(prefix)
    return (
        p
        + rb"(?:(?<!"
        + word
        + p
        + rb")|(?<=\\[nrtbf]"
        + p
        + rb")|(?<=\\u[0-9a-fA-F]{4}"
        + p
        + rb")|(?<=\xe2\x90\x800"
        + p
        + rb"))"
    )


_TOKEN_CHAR = rb"[A-Za-z0-9_\-]"
_WORD_CHAR = rb"[A-Za-z0-9_]"
# Between a name and its value: optional quotes (plain or JSON-escaped), blanks, ":" or "=".
# Possessive (`*+`, `++`, Python >= 3.11): a run of blanks is taken whole, never given back
# one character at a time. Nothing after a run can match a blank, so no match is lost, and a
# long run ("authorization" and 30,000 newlines) costs one pass instead of a cubic search.
_SEP = rb"""(?:\\?["'])?(?:\s|\\[nrt])*+(?:[:=]|=>)?(?:\s|\\[nrt])*+(?:\\?["'])?"""
_BLANKS = rb"(?:\s|\\[nrt])++"
_PEM = rb"(?:[A-Za-z0-9+/=:,\- \t]|\\[nrt])"  # one character of a PEM body in JSON text
# One JSON string's content (unrolled loop: fast on megabyte strings).
_CONTENT = rb'[^"\\]*(?:\\.[^"\\]*)*'


_ENV_NAMES = (
    b"PASSWORD",
    b"PASSWD",
    b"SECRET",
    b"TOKEN",
    b"API_KEY",
    b"APIKEY",
    b"ACCESS_KEY",
    b"PRIVATE_KEY",
)
_CODE_NAMES = (
    *(b"password", b"Password", b"passwd", b"api_key", b"apikey", b"apiKey"),
    *(b"access_token", b"accessToken", b"auth_token", b"authToken", b"client_secret"),
)
_VALUE = (
    rb"(?P<secret>(?!(?i:true|false|none|null|undefined)(?![A-Za-z0-9_]))"
    rb"[^\s\"'\\$\[{(<*&;|`][^\s\"'\\&;|`]{3,})"
)


def _assignment() -> bytes:
    """`=` (the literal the scan looks for), a look-behind per name, then the value."""

    def behind(names: Iterable[bytes]) -> bytes:
        return b"|".join(rb"(?<=" + re.escape(n) + rb"=)" for n in names)

    flags = (p + n for n in (*_CODE_NAMES, b"api-key") for p in (b"--", b"?", b"&"))
    optional_quote = rb"(?:\\?[\"'])?"
    every = (*_ENV_NAMES, *_CODE_NAMES, b"api-key")
    # One cheap filter first: the names' last two characters (`id=`, `ms=` stop here).
    tails = b"|".join(sorted({re.escape(n[-2:]) for n in every}))
    return (
        rb"=(?<=(?:"
        + tails
        + rb")=)(?:(?:"
        + behind(_ENV_NAMES)
        + rb"|"
        + behind(flags)
        + rb")"
        + optional_quote
        + rb"|(?:"
        + behind(_CODE_NAMES)
        + rb")\\?[\"'])"
        + _VALUE
    )


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern. The group `secret` (else the whole match) is what gets replaced.

    `lower`: the pattern is written in lower case and runs over the lower-cased text.
    """

    kind: str
    pattern: re.Pattern[bytes]
    lower: bool = False
    custom: bool = False  # from the settings: applied string by string, escape-safe
    # custom only: a search of the whole text may skip the string-by-string pass. Not for a
    # pattern that anchors or looks around, which can match in a string and not in the text.
    prefilter: bool = True


def _rule(kind: str, pattern: bytes, *, lower: bool = False) -> Rule:
    return Rule(kind, re.compile(pattern), lower=lower)


DEFAULT_RULES: tuple[Rule, ...] = (
    # The block up to its END line, or as far as it looks like key material (base64, header
    # lines, escaped newlines): a BEGIN line quoted in source code takes nothing after it.
    _rule(
        "private_key",
        rb"-----BEGIN (?P<label>[A-Z0-9 ]*)PRIVATE KEY-----(?P<secret>" + _PEM + rb"+?)"
        rb"(?:-----END (?P=label)PRIVATE KEY-----|(?!" + _PEM + rb"))",
    ),
    # Distinctive prefixes need no start boundary (so "\\u001b[0msk-ant-…" is found too).
    _rule("anthropic_key", rb"sk-ant-[A-Za-z0-9_\-]{20,}"),
    # sk- plus at least 20 token characters with a digit and a capital among them (real keys
    # are random base62; "sk-learn-…", "task-sk-…" or a kebab-case name are not redacted).
    _rule(
        "openai_key",
        _starts_word(b"sk-", _TOKEN_CHAR)
        + rb"(?=[a-z0-9_\-]*[A-Z])(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{20,}",
    ),
    # One scan for both: the engine hoists the common prefix "g".
    _rule("github_token", rb"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"),
    _rule(
        "aws_access_key_id",
        rb"A(?:KIA|SIA|BIA|CCA)(?:(?<!" + _WORD_CHAR + rb"....)|(?<=\\[nrtbf]....)"
        rb"|(?<=\\u[0-9a-fA-F]{4}....)|(?<=\xe2\x90\x800....))[A-Z0-9]{16}(?![A-Za-z0-9])",
    ),
    # 40 base64 characters are also what a git SHA looks like, so only after a name.
    _rule(
        "aws_secret_access_key",
        rb"secret[_\-.]?access[_\-.]?key" + _SEP + rb"(?P<secret>[a-z0-9/+]{40})(?![a-z0-9/+=])",
        lower=True,
    ),
    _rule("slack_token", rb"xox[abposr]-[A-Za-z0-9\-]{10,}"),
    _rule("stripe_key", rb"sk_(?:live|test)_[A-Za-z0-9]{16,}"),
    _rule("stripe_key", rb"rk_(?:live|test)_[A-Za-z0-9]{16,}"),
    _rule("google_api_key", rb"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"),
    _rule(
        "basic_auth",
        rb"authorization" + _SEP + rb"basic" + _BLANKS + rb"(?P<secret>[a-z0-9+/]{8,}={0,2})",
        lower=True,
    ),
    _rule(
        "bearer_token",
        _starts_word(b"bearer", rb"[a-z0-9_]") + _BLANKS + rb"(?P<secret>[a-z0-9._~+/\-]{16,}=*)",
        lower=True,
    ),
    # scheme://user:PASSWORD@host — user and host stay. The password runs to the last "@"
    # before the path, as urlsplit reads it.
    _rule("url_password", rb"://[^\s:/?#@\"\\]*:(?P<secret>[^\s/?#\"\\]+)@"),
    # Assignments. An upper-case (environment) name takes any value: PGPASSWORD=…,
    # GITHUB_TOKEN=…; a lower-case one only a quoted value (password="…") or as a command-line
    # flag or query parameter (--password=…, ?api_key=…), so that code such as
    # `password=password` stays. Never a $VARIABLE, a placeholder or true/false/null/None.
    _rule("secret_assignment", _assignment()),
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


def candidates(key_names: Iterable[str]) -> re2._Regexp[bytes]:
    """One RE2 pattern (linear time, one pass) that matches wherever any built-in rule could:
    each rule's leading literal, or for the key names their last word before `":`. A text
    without a match skips every built-in rule, the common case of a payload without secrets."""
    last_words = sorted(
        {
            re.escape(w[-1].encode())
            for n in key_names
            if (w := re.split(r"[-_. ]+", n.strip().lower())) and w[-1]
        }
    )
    names = sorted({re.escape(n) for n in (*_ENV_NAMES, *_CODE_NAMES, b"api-key")})
    alternatives = [
        rb"(?i:(?:" + b"|".join(last_words) + rb')":)',  # key_name (on the canonical text)
        rb"-----BEGIN ",  # private_key
        rb"sk-",  # anthropic_key, openai_key
        rb"gh[pousr]_|github_pat_",
        rb"A(?:KIA|SIA|BIA|CCA)",
        rb"(?i:secret[_\-.]?access[_\-.]?key)",
        rb"xox[abposr]-",
        rb"[sr]k_(?:live|test)_",
        rb"AIza",
        rb"(?i:authorization)",  # basic_auth
        rb"(?i:bearer)",
        rb"://",  # url_password
        rb"(?:" + b"|".join(names) + rb")=",  # secret_assignment
    ]
    return re2.compile(b"|".join(alternatives))


def key_name_rule(names: Iterable[str]) -> Rule | None:
    """One pattern for every spelling of the key names: where a key ends (`":`), a look-behind
    per spelling length, then the member's string value as the secret."""
    spellings: set[bytes] = set()
    for name in names:
        words = [w for w in re.split(r"[-_. ]+", name.strip().lower()) if w]
        for seps in itertools.product(KEY_WORD_SEPARATORS, repeat=max(len(words) - 1, 0)):
            spelled = words[0] + "".join(s + w for s, w in zip(seps, words[1:], strict=True))
            spellings.add(spelled.encode("utf-8"))
    if not spellings:
        return None
    by_length: dict[int, list[bytes]] = {}
    for spelled in sorted(spellings):
        by_length.setdefault(len(spelled), []).append(re.escape(spelled))
    behind = b"|".join(
        rb"(?<=(?:" + b"|".join(group) + rb')":)' for _, group in sorted(by_length.items())
    )
    # Most keys fail on their last characters: one look-behind over those filters first.
    width = min(KEY_FILTER_WIDTH, *by_length)
    tails = b"|".join(sorted({re.escape(s[-width:]) for s in spellings}))
    pattern = (
        rb'":(?<=(?:' + tails + rb')":)(?:' + behind + rb')\s*+"(?P<secret>' + _CONTENT + rb')"'
    )
    return Rule(KEY_KIND, re.compile(pattern), lower=True)


@dataclass(slots=True)
class Result:
    """What the Redactor did to one payload."""

    body: bytes
    counts: Counter[str] = field(default_factory=Counter)  # replacements per kind
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


def compile_pattern(pattern: str) -> re.Pattern[bytes]:
    """A pattern from the settings, compiled for the UTF-8 JSON text; ValueError says why not."""
    try:
        compiled = re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise ValueError(
            f"pattern {pattern!r} is not a valid regular expression ({exc}); fix it (Python re syntax)"
        ) from None
    if compiled.search(b""):
        raise ValueError(f"pattern {pattern!r} matches the empty string; make it match the secret")
    return compiled


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
        self.enabled = enabled
        self.budget_s = budget_s
        keys = key_name_rule((*DEFAULT_KEY_NAMES, *extra_keys))
        self.candidates = candidates((*DEFAULT_KEY_NAMES, *extra_keys))
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
        drops: dict[str, tuple[str, ...]] = {}
        for on, table in (
            (drop_prompts, DROP_PROMPT_FIELDS),
            (drop_tool_output, DROP_TOOL_OUTPUT_FIELDS),
        ):
            if on:
                for event, fields in table.items():
                    drops[event] = drops.get(event, ()) + fields
        self.drops: Mapping[str, tuple[str, ...]] = drops

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        return cls(
            enabled=settings.redact,
            extra_keys=settings.redact_keys,
            extra_patterns=settings.redact_patterns,
            drop_prompts=settings.drop_prompts,
            drop_tool_output=settings.drop_tool_output,
        )

    @property
    def active(self) -> bool:
        """Whether this configuration can change any payload at all."""
        return self.enabled or bool(self.drops)

    def apply(self, body: bytes, event_type: str) -> Result:
        """Drop the fields the privacy switches name, then redact secrets."""
        result = Result(body)
        fields = self.drops.get(event_type)
        if fields:
            result.body, result.dropped = drop_fields(result.body, fields)
        if self.enabled:
            result.body = self._redact(result.body, result.counts)
        return result

    def redact(self, body: bytes) -> Result:
        """Secrets in one JSON text replaced by markers (no fields dropped)."""
        result = Result(body)
        if self.enabled:
            result.body = self._redact(body, result.counts)
        return result

    def _redact(self, body: bytes, counts: Counter[str]) -> bytes:
        """Secrets replaced in the canonical text when the sender used optional escapes, so the
        returned text may be the canonical one; unchanged (the same object) without a secret.
        Raises RedactionBudgetError past `budget_s` (checked between rules)."""
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
                counts[rule.kind] += 1
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


def _redact_in_strings(body: bytes, rule: Rule, counts: Counter[str]) -> bytes:
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
            counts[rule.kind] += 1
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
