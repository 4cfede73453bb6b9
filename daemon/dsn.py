"""libpq connection URIs: the secrets in them, checked before use and kept out of output.

A password can sit in a URI's userinfo (`postgresql://u:PW@h/db`) or in its query
(`?password=PW`, `?sslpassword=PW`). libpq echoes parts of a URI it cannot parse, so an
error message can carry the password: `check` turns such errors into a ConfigError with the
secrets masked, and `scrub` masks them in any text (log lines, tracebacks) before it is written.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from daemon.errors import ConfigError

MASK = "***"
# Query parameters whose value is a secret (libpq: `password`, and `sslpassword` for the client key).
SECRET_PARAMS = frozenset({"password", "sslpassword"})
# Shorter secrets are not scrubbed from free text: masking every "ab" would wreck the logs,
# and a password that short is no protection anyway. URIs are always masked whatever the length.
MIN_SCRUB_CHARS = 4

_SCHEME = re.compile(r"^(postgresql|postgres)://", re.IGNORECASE)


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Start and end of the password in the userinfo, parsed as libpq does (up to '@' before any '/')."""
    m = _SCHEME.match(url)
    if m is None:
        return None
    start = end = m.end()
    while end < len(url) and url[end] not in "@/":
        end += 1
    if end >= len(url) or url[end] != "@":
        return None
    at = end
    colon = url.find(":", start, at)
    if colon < 0:
        return None
    return colon + 1, at


def _query_spans(url: str) -> list[tuple[int, int]]:
    """Start and end of each secret parameter's value in the query string."""
    if _SCHEME.match(url) is None or "?" not in url:
        return []
    pos = url.index("?") + 1
    spans = []
    for pair in url[pos:].split("&"):
        key, eq, _value = pair.partition("=")
        if eq and unquote(key).lower() in SECRET_PARAMS:
            spans.append((pos + len(key) + 1, pos + len(pair)))
        pos += len(pair) + 1
    return spans


def _spans(url: str) -> list[tuple[int, int]]:
    user = _userinfo_span(url)
    return sorted(([user] if user else []) + _query_spans(url))


def secrets(url: str | None) -> tuple[str, ...]:
    """Every secret in the URI, as written and percent-decoded, longest first."""
    if not url:
        return ()
    found: set[str] = set()
    for start, end in _spans(url):
        raw = url[start:end]
        found.update(s for s in (raw, unquote(raw)) if s)
    return tuple(sorted(found, key=lambda s: (-len(s), s)))


def mask(url: str | None) -> str | None:
    """The URI with each secret replaced by ***; everything else exactly as given."""
    if not url:
        return url
    out, last = [], 0
    for start, end in _spans(url):
        if end > start:
            out += [url[last:start], MASK]
            last = end
    return "".join(out) + url[last:]


def scrub(text: str, hidden: tuple[str, ...]) -> str:
    """`text` with every secret of at least MIN_SCRUB_CHARS characters replaced by ***."""
    for secret in hidden:
        if len(secret) >= MIN_SCRUB_CHARS:
            text = text.replace(secret, MASK)
    return text


def without_password(url: str) -> tuple[str, str | None]:
    """(URI without its secrets, the password) — for handing the URI to another program's argv.

    The caller passes the password through the environment (PGPASSWORD), which other users
    cannot read, unlike /proc/<pid>/cmdline.
    """
    user = _userinfo_span(url)
    password = unquote(url[user[0] : user[1]]) if user else None
    text = url[: user[0] - 1] + url[user[1] :] if user else url  # drop ":password"
    base, question, query = text.partition("?")
    if not question:
        return text, password
    kept = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        name = unquote(key).lower()
        if name == "password":
            password = unquote(value)  # libpq: the query overrides the userinfo
        if name not in SECRET_PARAMS:
            kept.append(pair)
    return (f"{base}?{'&'.join(kept)}" if kept else base), password


ENCODING_HINT = (
    "special characters in a password must be percent-encoded: %25 for %, %40 for @, %2F for /"
)


def check(url: str | None) -> None:
    """Raise ConfigError if libpq cannot parse the URI; the message never holds its secrets.

    Also refused: a second '@' before the path. libpq ends the userinfo at the first '@', so
    an unencoded '@' in a password would make the rest of it the host name, which libpq's
    "could not translate host name" error then prints.
    """
    if not url:
        return
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(url)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a configuration error
        # libpq quotes the whole URI in some messages: mask it whatever the secrets' length.
        reason = str(exc).strip().replace(url, mask(url) or "")
        reason = scrub(reason, secrets(url)) or type(exc).__name__
        raise ConfigError(
            f"SESSION_DB_URL is not a valid libpq URI: {reason} ({ENCODING_HINT})"
        ) from None
    user = _userinfo_span(url)
    if user is not None and "@" in re.split(r"[/?]", url[user[1] + 1 :], maxsplit=1)[0]:
        raise ConfigError(f"SESSION_DB_URL has an '@' after the user info ({ENCODING_HINT})")
