"""daemon.config: defaults < TOML file < environment, every value with its source."""

from __future__ import annotations

import os
import socket
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import config
from daemon.config import describe, mask_url
from daemon.errors import EX_CONFIG, ConfigError


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME and the XDG dirs at tmp_path so no real user config is ever read."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for key in list(os.environ):
        if key.startswith("SESSION_DB_"):
            monkeypatch.delenv(key)
    return home


def load(env: dict[str, str]) -> config.Settings:
    """config.load with the isolated HOME/XDG dirs of the autouse fixture plus `env`."""
    base = {
        k: os.environ[k] for k in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME")
    }
    return config.load({**base, **env})


def write_toml(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_config_load_defaults_without_file_or_env(tmp_path: Path) -> None:
    """With no file and no env every setting is its default and says so."""
    s = load({})
    assert {o.key: "default" for o in config.OPTIONS} == dict(s.sources)
    assert s.url is None
    assert s.embedded
    assert tmp_path / "xdg-state" / "session-db" == s.state_dir
    assert s.state_dir / "spool" == s.spool
    assert tmp_path / "xdg-data" / "session-db" == s.data_dir
    assert () == s.watch
    assert socket.gethostname() == s.host
    assert config.BATCH_MAX_FILES == s.batch_max_files
    assert config.ORPHAN_TTL_S == s.orphan_ttl_s
    assert tmp_path / "xdg-config" / "session-db" / "config.toml" == s.config_file


def test_config_load_precedence_env_over_file_over_default(tmp_path: Path) -> None:
    """An env var beats the TOML file, which beats the default; sources report each."""
    path = write_toml(tmp_path, "batch_max_files = 10\nscan_interval_s = 2.5\n")
    s = load({"SESSION_DB_CONFIG": str(path), "SESSION_DB_BATCH_MAX_FILES": "20"})
    assert 20 == s.batch_max_files
    assert "env SESSION_DB_BATCH_MAX_FILES" == s.sources["batch_max_files"]
    assert 2.5 == s.scan_interval_s
    assert f"file {path}" == s.sources["scan_interval_s"]
    assert config.BATCH_MAX_BYTES == s.batch_max_bytes
    assert "default" == s.sources["batch_max_bytes"]
    assert path == s.config_file


def test_config_load_empty_env_var_falls_back_to_file(tmp_path: Path) -> None:
    """An empty env var counts as unset: the file's value applies."""
    path = write_toml(tmp_path, "batch_max_files = 10\n")
    s = load({"SESSION_DB_CONFIG": str(path), "SESSION_DB_BATCH_MAX_FILES": ""})
    assert (10, f"file {path}") == (s.batch_max_files, s.sources["batch_max_files"])


def test_config_load_reads_default_file_location(tmp_path: Path) -> None:
    """Without SESSION_DB_CONFIG the file under XDG_CONFIG_HOME is read."""
    path = tmp_path / "xdg-config" / "session-db" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('log_format = "json"\n', encoding="utf-8")
    s = load({})
    assert ("json", f"file {path}") == (s.log_format, s.sources["log_format"])


def test_config_load_unknown_toml_key_names_file(tmp_path: Path) -> None:
    """An unknown key in the TOML file is a ConfigError naming the file and the key."""
    path = write_toml(tmp_path, "batch_max_files = 10\nbatch_size = 5\n")
    with pytest.raises(ConfigError, match="batch_size") as excinfo:
        load({"SESSION_DB_CONFIG": str(path)})
    assert str(path) in str(excinfo.value)
    assert EX_CONFIG == excinfo.value.exit_code


def test_config_load_invalid_toml_names_file(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = write_toml(tmp_path, "batch_max_files = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as excinfo:
        load({"SESSION_DB_CONFIG": str(path)})
    assert str(path) in str(excinfo.value)


def test_config_load_missing_explicit_file_rejected(tmp_path: Path) -> None:
    """SESSION_DB_CONFIG naming a missing file is a ConfigError, not a silent default."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="file not found") as excinfo:
        load({"SESSION_DB_CONFIG": str(missing)})
    assert str(missing) in str(excinfo.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SESSION_DB_BATCH_MAX_FILES", "ten"),
        ("SESSION_DB_BATCH_MAX_FILES", "0"),
        ("SESSION_DB_BATCH_MAX_BYTES", "-1"),
        ("SESSION_DB_CONNECT_TIMEOUT_S", "1.5"),
        ("SESSION_DB_STATEMENT_TIMEOUT_MS", "0"),
        ("SESSION_DB_SCAN_INTERVAL_S", "soon"),
        ("SESSION_DB_SCAN_INTERVAL_S", "0"),
        ("SESSION_DB_ORPHAN_TTL_S", "a day"),
        ("SESSION_DB_LOG_FORMAT", "xml"),
        ("SESSION_DB_HOST", "a/b"),
    ],
)
def test_config_load_invalid_env_value_rejected(var: str, value: str) -> None:
    """An invalid value in an env var is a ConfigError."""
    with pytest.raises(ConfigError):
        load({var: value})


@pytest.mark.parametrize(
    "line",
    [
        'batch_max_files = "abc"',
        "batch_max_files = [1]",
        "scan_interval_s = -2.0",
        'log_format = "yaml"',
    ],
)
def test_config_load_invalid_file_value_names_file(tmp_path: Path, line: str) -> None:
    """An invalid value in the TOML file is a ConfigError that names the file."""
    path = write_toml(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as excinfo:
        load({"SESSION_DB_CONFIG": str(path)})
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SESSION_DB_SCAN_INTERVAL_S", "nan"),
        ("SESSION_DB_SCAN_INTERVAL_S", "inf"),
        ("SESSION_DB_ORPHAN_TTL_S", "-1"),
        ("SESSION_DB_ORPHAN_TTL_S", "nan"),
    ],
)
def test_config_load_non_finite_or_negative_interval_rejected(var: str, value: str) -> None:
    """A NaN, infinite or negative interval is a ConfigError (a negative TTL takes live files)."""
    with pytest.raises(ConfigError):
        load({var: value})


@pytest.mark.parametrize("value", ["maybe", "ture", "2"])
def test_config_load_invalid_boolean_rejected(value: str) -> None:
    """A value that is neither true-ish nor false-ish for force_polling is a ConfigError."""
    with pytest.raises(ConfigError):
        load({"SESSION_DB_FORCE_POLLING": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("off", False),
    ],
)
def test_config_load_boolean_spellings(value: str, expected: bool) -> None:
    """force_polling accepts the usual boolean spellings in either case."""
    assert expected == load({"SESSION_DB_FORCE_POLLING": value}).force_polling


def test_config_load_toml_boolean(tmp_path: Path) -> None:
    """A TOML boolean true enables force_polling."""
    path = write_toml(tmp_path, "force_polling = true\n")
    assert load({"SESSION_DB_CONFIG": str(path)}).force_polling


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "postgresql+psycopg://u@h/db",  # an SQLAlchemy URL, not libpq
        "sqlite:///tmp/x.db",
        "host=localhost dbname=x",
        "localhost:5432/db",
    ],
)
def test_config_load_non_libpq_url_rejected(url: str) -> None:
    """SESSION_DB_URL must be a postgresql:// or postgres:// URI."""
    with pytest.raises(ConfigError, match="libpq"):
        load({"SESSION_DB_URL": url})


@pytest.mark.parametrize("url", ["postgresql://u@localhost:5432/db", "postgres://u@/db?host=/tmp"])
def test_config_load_libpq_url_accepted(url: str) -> None:
    """A libpq URI is accepted and turns the embedded cluster off."""
    s = load({"SESSION_DB_URL": url})
    assert (url, False, "env SESSION_DB_URL") == (s.url, s.embedded, s.sources["url"])


def test_config_load_watch_split_on_pathsep(isolated_home: Path) -> None:
    """SESSION_DB_WATCH is split on os.pathsep, empty parts dropped, ~ expanded."""
    value = os.pathsep.join(["/srv/a", "/srv/b", "", "~/c"])
    s = load({"SESSION_DB_WATCH": value})
    assert (Path("/srv/a"), Path("/srv/b"), isolated_home / "c") == s.watch
    assert "env SESSION_DB_WATCH" == s.sources["watch"]


def test_config_load_watch_from_toml_list(tmp_path: Path) -> None:
    """A TOML array of paths becomes the watch tuple."""
    path = write_toml(tmp_path, 'watch = ["/srv/a", "/srv/b"]\n')
    assert (Path("/srv/a"), Path("/srv/b")) == load({"SESSION_DB_CONFIG": str(path)}).watch


def test_config_load_spool_follows_state_dir(tmp_path: Path) -> None:
    """Without its own setting the spool lives under the configured state_dir."""
    s = load({"SESSION_DB_STATE_DIR": str(tmp_path / "st")})
    assert (tmp_path / "st", tmp_path / "st" / "spool") == (s.state_dir, s.spool)
    assert "default" == s.sources["spool"]


def test_config_load_explicit_spool_wins(tmp_path: Path) -> None:
    """An explicit spool setting is used as given."""
    path = write_toml(tmp_path, f'state_dir = "{tmp_path / "st"}"\nspool = "{tmp_path / "sp"}"\n')
    s = load({"SESSION_DB_CONFIG": str(path)})
    assert tmp_path / "sp" == s.spool


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:hunter2@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://:hunter2@h/db", "postgresql://:***@h/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:a:b@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql:///db?host=/tmp", "postgresql:///db?host=/tmp"),
        (None, None),
        ("", ""),
    ],
)
def test_config_mask_url_hides_password(url: str | None, expected: str | None) -> None:
    """mask_url replaces the password with *** and leaves URLs without one unchanged."""
    assert expected == mask_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:hunter2@h:5432/db",
        "postgresql://u:hunter2@h/db?sslmode=require",
        "postgresql://u@h/db?password=hunter2",  # libpq accepts any parameter in the query string
        "postgresql://u@h/db?sslmode=require&password=hunter2",
    ],
)
def test_config_describe_never_shows_password(url: str) -> None:
    """describe() never shows a password, wherever the libpq URI carries it."""
    rows = describe(load({"SESSION_DB_URL": url}))
    assert "hunter2" not in repr(rows)


PASSWORD_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%:"


@settings(max_examples=100, deadline=None, database=None)
@given(password=st.text(alphabet=PASSWORD_CHARS, min_size=1, max_size=20))
def test_config_describe_masks_any_netloc_password(password: str) -> None:
    """For any password in the URI's userinfo, describe() does not show it."""
    secret = "Zq" + password  # 'Zq' appears nowhere else in the URL or the settings
    rows = describe(
        load({"SESSION_DB_URL": f"postgresql://user:{secret}@db.example:5432/sessions"})
    )
    url_row = next(r for r in rows if r[0] == "url")
    assert "postgresql://user:***@db.example:5432/sessions" == url_row[1]
    assert secret not in repr(rows)


def test_config_describe_reports_every_setting_with_source(tmp_path: Path) -> None:
    """describe() has one (key, shown, source) row per option, in order, with readable values."""
    path = write_toml(tmp_path, "batch_max_files = 7\n")
    s = load({"SESSION_DB_CONFIG": str(path), "SESSION_DB_WATCH": os.pathsep.join(["/a", "/b"])})
    rows = describe(s)
    assert [o.key for o in config.OPTIONS] == [r[0] for r in rows]
    by_key = {r[0]: r for r in rows}
    assert ("url", "(embedded cluster)", "default") == by_key["url"]
    assert ("batch_max_files", "7", f"file {path}") == by_key["batch_max_files"]
    assert ("watch", os.pathsep.join(["/a", "/b"]), "env SESSION_DB_WATCH") == by_key["watch"]
    assert ("pg_bin", "(none)", "default") == by_key["pg_bin"]
