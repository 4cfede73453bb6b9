"""libpq URIs: secrets found wherever they sit, masked for display, kept out of argv and logs."""

from __future__ import annotations

import io
import json
import string
from urllib.parse import quote

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import dsn
from daemon import log as logsetup
from daemon.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:hunter22@h:5432/db", {"hunter22"}),
        ("postgresql://u:p%40ss@h/db", {"p%40ss", "p@ss"}),
        ("postgresql://u@h/db?sslmode=require&password=qq%20xy", {"qq%20xy", "qq xy"}),
        ("postgresql://u@h/db?sslpassword=keypass", {"keypass"}),
        ("postgresql://u:a:b@h1:1,h2:2/db", {"a:b"}),
        ("postgresql://u:S3cret%zzPW@h/db", {"S3cret%zzPW"}),
        ("postgresql://u:S3cretPW@[::1/db", {"S3cretPW"}),
        ("postgresql://u@h/db", set()),
        ("postgresql:///db?host=/tmp", set()),
        (None, set()),
    ],
)
def test_dsn_secrets_finds_userinfo_and_query_passwords(
    url: str | None, expected: set[str]
) -> None:
    """Userinfo and query passwords are found, as written and percent-decoded, even in URIs libpq rejects."""
    assert expected == set(dsn.secrets(url))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:hunter22@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?sslmode=verify-full&password=x%26y&sslrootcert=/etc/ca.crt",
            "postgresql://u@h/db?sslmode=verify-full&password=***&sslrootcert=/etc/ca.crt",
        ),
        ("postgresql://u:S3cretPW@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_dsn_mask_changes_only_the_secrets(url: str, expected: str) -> None:
    """mask() replaces each secret by *** and leaves every other character of the URI alone."""
    assert expected == dsn.mask(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://u:p%40ss@h/db?sslmode=require",
            ("postgresql://u@h/db?sslmode=require", "p@ss"),
        ),
        (
            "postgresql://u@h/db?password=pw1&sslmode=require",
            ("postgresql://u@h/db?sslmode=require", "pw1"),
        ),
        ("postgresql://u:pw1@h/db?password=pw2", ("postgresql://u@h/db", "pw2")),
        ("postgresql://u@h/db?sslpassword=k", ("postgresql://u@h/db", None)),
        ("postgresql://u@h/db", ("postgresql://u@h/db", None)),
    ],
)
def test_dsn_without_password_leaves_no_secret_in_the_uri(
    url: str, expected: tuple[str, str | None]
) -> None:
    """without_password() returns a URI safe for argv and the password libpq would have used."""
    assert expected == dsn.without_password(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:S3cret%zzPW@127.0.0.1:1/db",  # libpq quotes the bad token: the password
        "postgresql://u:S3cretPW@[::1/db",  # libpq quotes the whole URI
        "postgresql://u:S3cret@PW@127.0.0.1/db",  # libpq would print "PW@127.0.0.1" as a host name
    ],
)
def test_dsn_check_masks_the_password_in_libpq_parse_errors(url: str) -> None:
    """A URI libpq cannot parse is a ConfigError whose message holds no secret."""
    with pytest.raises(ConfigError) as info:
        dsn.check(url)
    assert "S3cret" not in str(info.value)
    assert "SESSION_DB_URL" in str(info.value)
    assert info.value.__cause__ is None  # the libpq error, with the secret, is not chained
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_dsn_check_accepts_valid_uris() -> None:
    """Valid URIs, with or without secrets and TLS parameters, pass."""
    for url in (
        None,
        "postgresql://u:p%25w@h:5432/db?sslmode=verify-full&sslrootcert=/x.crt",
        "postgresql:///db?host=/tmp",
    ):
        dsn.check(url)


def test_dsn_scrub_leaves_short_secrets() -> None:
    """scrub() masks secrets of MIN_SCRUB_CHARS or more, and does not shred text for shorter ones."""
    assert "user *** at a b" == dsn.scrub("user hunter2 at a b", ("hunter2", "a"))


PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


@settings(max_examples=200, deadline=None, database=None)
@given(password=st.text(alphabet=PRINTABLE, min_size=1, max_size=24))
def test_dsn_any_percent_encoded_password_is_found_masked_and_moved(password: str) -> None:
    """For any password, percent-encoded as libpq requires: check passes, mask hides it, argv form drops it."""
    secret = "Zq" + password
    for url in (
        f"postgresql://user:{quote(secret, safe='')}@db.example:5432/sessions?sslmode=require",
        f"postgresql://user@db.example/sessions?password={quote(secret, safe='')}",
    ):
        dsn.check(url)
        assert secret in dsn.secrets(url)
        masked = dsn.mask(url)
        assert masked is not None
        assert secret not in masked
        assert quote(secret, safe="") not in masked
        target, found = dsn.without_password(url)
        assert secret == found
        assert quote(secret, safe="") not in target


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_dsn_log_lines_and_tracebacks_never_show_the_secret(fmt: str) -> None:
    """With the URL's secrets configured, no log field and no traceback text shows them."""
    url = "postgresql://u:Zq-hunter-22@h/db"
    out = io.StringIO()
    try:
        logsetup.configure(fmt, stream=out, journal=False, secrets=dsn.secrets(url))
        log = structlog.get_logger("test")
        log.error("db_down", error="password Zq-hunter-22 rejected", url=url)
        try:
            raise RuntimeError(f"connecting to {url}")
        except RuntimeError:
            log.exception("crashed")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "Zq-hunter-22" not in text
    assert "password *** rejected" in text
    assert "RuntimeError" in text
    if fmt == "json":
        assert "db_down" == json.loads(text.splitlines()[0])["event"]
