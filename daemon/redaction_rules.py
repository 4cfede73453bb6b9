"""The redaction rules catalogue: built-in secret patterns, key names, privacy-switch fields.

What each rule matches and why is told next to it; daemon.redaction (the engine) applies them.
A pattern from the settings is checked here too (`compile_pattern`), so daemon.config can
validate `redact_patterns` without importing the engine.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import re2

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


def candidates(key_names: Iterable[str], also: Iterable[bytes] = ()) -> re2._Regexp[bytes]:
    """One RE2 pattern (linear time, one pass) that matches wherever any built-in rule could:
    each rule's leading literal, or for the key names their last word before `":`, or one of
    the patterns `also` (RE2 syntax). A text without a match skips every built-in rule, the
    common case of a payload without secrets."""
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
        *also,
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
