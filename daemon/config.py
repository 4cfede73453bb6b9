"""Settings: defaults, overridden by a TOML file, overridden by environment variables.

Every setting knows where its value came from, so `session-db config` can say so.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError
from daemon.redaction_rules import compile_pattern

# Defaults, each with its unit.
BATCH_MAX_FILES = 2000
BATCH_MAX_BYTES = 16 * 2**20
SCAN_INTERVAL_S = 5.0  # full scan of the spool and session roots, whatever the watcher says
WATCH_DEBOUNCE_MS = 200  # longest the watcher coalesces changes before waking the loop
WATCH_STEP_MS = 20  # quiet time after which the watcher yields a change set
FOREIGN_GRACE_S = 10.0  # a header-less file younger than this may still be mid-write
ORPHAN_TTL_S = 24 * 3600.0  # tmp/ files older than this were left by a killed hook
# A payload string longer than this (UTF-8 bytes) is truncated in the row.
FIELD_CAP_BYTES = 256 * 1024
# A spool file larger than this is quarantined unread (jsonb tops out near 255 MB).
MAX_FILE_BYTES = 256 * 2**20
BACKLOG_WARN_FILES = 10_000  # warn (log, STATUS=, status) when more files than this wait in new/
BACKLOG_WARN_AGE_S = 300.0  # … or when the oldest waiting file is older than this
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000
LOCK_TIMEOUT_MS = 10_000
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
# The conversation archive (docs/archive.md): full text, metadata only (roles, times, tools,
# sizes; no text), or no messages rows at all.
ARCHIVE_MODES = ("full", "metadata", "off")
ARCHIVE_DEFAULT = "full"
LOG_FORMATS = ("auto", "json", "console")
PARSE_WORKERS = 0  # worker processes for read+parse+redaction of large batches; 0 = none

ENV_PREFIX = "SESSION_DB_"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _xdg(env: Mapping[str, str], var: str, fallback: str) -> Path:
    return Path(env.get(var) or str(_home(env) / fallback)) / "session-db"


def default_config_file(env: Mapping[str, str] = os.environ) -> Path:
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / "config.toml"


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _xdg(env, "XDG_STATE_HOME", ".local/state")


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    return _xdg(env, "XDG_DATA_HOME", ".local/share")


def _as_path(value: Any) -> Path:
    return Path(os.path.expanduser(str(value)))


def _as_int(value: Any) -> int:
    if isinstance(value, bool | float):
        raise ValueError("expected a whole number")
    return int(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


def _as_str(value: Any) -> str:
    return str(value)


def _as_paths(value: Any) -> tuple[Path, ...]:
    items = (
        [str(v) for v in value] if isinstance(value, list | tuple) else str(value).split(os.pathsep)
    )
    return tuple(_as_path(i) for i in items if i)


def _as_names(value: Any) -> tuple[str, ...]:
    """A TOML list of strings, or one comma-separated string (the environment)."""
    items = [str(v) for v in value] if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(i.strip() for i in items if i.strip())


def _as_patterns(value: Any) -> tuple[str, ...]:
    """A TOML list of regular expressions; in the environment a JSON array of them, or one
    expression (regular expressions contain commas, so no comma-separated form)."""
    if isinstance(value, str):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else [text]
    else:
        items = value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of regular expressions (strings)")
    for pattern in items:
        compile_pattern(pattern)  # ValueError names the pattern and what is wrong with it
    return tuple(items)


POSITIVE = "positive"
NOT_NEGATIVE = "not negative"


@dataclass(frozen=True)
class Option:
    """One setting: its key (TOML key; env var is SESSION_DB_<KEY upper>), parser and help."""

    key: str
    parse: Callable[[Any], Any]
    help: str
    choices: tuple[str, ...] = ()
    secret: bool = False
    bound: str | None = None  # POSITIVE or NOT_NEGATIVE, checked after parsing

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()


def _setting(
    default: Any, parse: Callable[[Any], Any], help: str, *, choices: tuple[str, ...] = (),
    secret: bool = False, bound: str | None = None,
) -> Any:  # fmt: skip
    """A Settings field that is also a documented option (its key is the field's name)."""
    option = Option("", parse, help, choices, secret, bound)
    return field(default=default, metadata={"option": option})


@dataclass(frozen=True)
class Settings:
    """Effective settings, one field per option. `sources` maps each key to default, the TOML
    file, or the env var. Fields whose default is None get one computed by `load`."""

    url: str | None = _setting(
        None, _as_str, "libpq URI of the database; unset = private embedded cluster", secret=True
    )
    # _setting returns dataclasses.field(); ruff cannot see that for these non-builtin types.
    state_dir: Path = _setting(None, _as_path, "state directory (embedded cluster, spool by default)")  # noqa: RUF009
    spool: Path = _setting(None, _as_path, "spool directory the hooks write to (default <state_dir>/spool)")  # noqa: RUF009
    data_dir: Path = _setting(None, _as_path, "where `hooks install` puts the hook script")  # noqa: RUF009
    watch: tuple[Path, ...] = _setting(
        (), _as_paths, "project roots or agents/sessions folders to watch, os.pathsep-separated"
    )
    transcript_roots: tuple[Path, ...] = _setting(
        (), _as_paths,
        "more folders whose transcripts may be read, besides Claude's projects/ folders, os.pathsep-separated",
    )  # fmt: skip
    host: str = _setting(None, _as_str, "host name recorded with rows (default: this machine's)")
    batch_max_files: int = _setting(
        BATCH_MAX_FILES, _as_int, "most spool files per transaction", bound=POSITIVE
    )
    batch_max_bytes: int = _setting(
        BATCH_MAX_BYTES, _as_int, "most payload bytes per transaction", bound=POSITIVE
    )
    scan_interval_s: float = _setting(
        SCAN_INTERVAL_S, _as_float, "seconds between full scans of spool and session roots",
        bound=POSITIVE,
    )  # fmt: skip
    watch_debounce_ms: int = _setting(
        WATCH_DEBOUNCE_MS, _as_int, "longest the file watcher coalesces changes", bound=POSITIVE
    )
    foreign_grace_s: float = _setting(
        FOREIGN_GRACE_S, _as_float, "seconds a header-less spool file may still be mid-write",
        bound=NOT_NEGATIVE,
    )  # fmt: skip
    orphan_ttl_s: float = _setting(
        ORPHAN_TTL_S, _as_float, "seconds before a tmp/ file left by a killed hook is quarantined",
        bound=POSITIVE,
    )  # fmt: skip
    field_cap_bytes: int = _setting(
        FIELD_CAP_BYTES, _as_int, "longest payload string stored in a row (bytes; 0 = no cap)",
        bound=NOT_NEGATIVE,
    )  # fmt: skip
    keep_originals: bool = _setting(
        True, _as_bool, "keep the untruncated file in <spool>/originals when a field was capped"
    )
    parse_workers: int = _setting(
        PARSE_WORKERS, _as_int,
        "worker processes that read, parse and redact large spool batches (0 = in the daemon's process)",
        bound=NOT_NEGATIVE,
    )  # fmt: skip
    max_file_bytes: int = _setting(
        MAX_FILE_BYTES, _as_int, "spool files larger than this are quarantined without reading",
        bound=POSITIVE,
    )  # fmt: skip
    redact: bool = _setting(
        True, _as_bool, "replace secrets (API keys, passwords…) in payloads before insert"
    )
    redact_keys: tuple[str, ...] = _setting(
        (), _as_names, "more object keys whose string values are secrets (comma-separated or a TOML list)"
    )
    redact_patterns: tuple[str, ...] = _setting(
        (), _as_patterns,
        "more regular expressions for secrets (a TOML list; env: a JSON array or one expression)",
    )  # fmt: skip
    drop_prompts: bool = _setting(
        False, _as_bool, "store no prompt text (UserPromptSubmit/Expansion prompt)"
    )
    drop_tool_output: bool = _setting(
        False, _as_bool, "store no tool output (PostToolUse tool_response, PostToolUseFailure error)"
    )
    archive: str = _setting(
        ARCHIVE_DEFAULT, _as_str, "conversation archive (messages table): full, metadata (no text), off",
        choices=ARCHIVE_MODES,
    )  # fmt: skip
    backlog_warn_files: int = _setting(
        BACKLOG_WARN_FILES, _as_int, "warn when more spool files than this are waiting"
    )
    backlog_warn_age_s: float = _setting(
        BACKLOG_WARN_AGE_S, _as_float, "warn when the oldest waiting spool file is older than this"
    )
    connect_timeout_s: int = _setting(
        CONNECT_TIMEOUT_S, _as_int, "database connect timeout", bound=POSITIVE
    )
    statement_timeout_ms: int = _setting(
        STATEMENT_TIMEOUT_MS, _as_int, "database statement timeout", bound=POSITIVE
    )
    force_polling: bool = _setting(
        False, _as_bool, "poll instead of inotify (NFS, containers, WSL)"
    )
    log_format: str = _setting(
        "auto", _as_str, "log output: auto (console on a TTY, JSON otherwise), json, console",
        choices=LOG_FORMATS,
    )  # fmt: skip
    pg_bin: str | None = _setting(
        None, _as_str, "directory with initdb/pg_ctl/postgres for the embedded cluster"
    )
    config_file: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return not self.url


OPTIONS: tuple[Option, ...] = tuple(
    replace(f.metadata["option"], key=f.name) for f in fields(Settings) if "option" in f.metadata
)
OPTIONS_BY_KEY = {o.key: o for o in OPTIONS}


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Build the effective settings; raise ConfigError naming the file or variable at fault."""
    env = os.environ if env is None else env
    toml_path = (
        Path(env["SESSION_DB_CONFIG"]).expanduser()
        if env.get("SESSION_DB_CONFIG")
        else default_config_file(env)
    )
    from_file: dict[str, Any] = {}
    if toml_path.exists():
        try:
            from_file = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{toml_path}: not valid TOML ({exc}); fix the file or point SESSION_DB_CONFIG elsewhere"
            ) from exc
        unknown = sorted(set(from_file) - set(OPTIONS_BY_KEY))
        if unknown:
            raise ConfigError(
                f"{toml_path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(OPTIONS_BY_KEY)}"
            )
    elif env.get("SESSION_DB_CONFIG"):
        raise ConfigError(
            f"SESSION_DB_CONFIG={toml_path}: file not found; create it or unset the variable"
        )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        raw: Any = None
        if env.get(opt.env) not in (None, ""):
            raw, source = env[opt.env], f"env {opt.env}"
        elif opt.key in from_file:
            raw, source = from_file[opt.key], f"file {toml_path}"
        if raw is None:
            continue
        try:
            value = opt.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {opt.key}={raw!r} is not valid ({exc})") from exc
        if opt.choices and value not in opt.choices:
            raise ConfigError(
                f"{source}: {opt.key}={raw!r}; choose one of {', '.join(opt.choices)}"
            )
        values[opt.key] = value
        sources[opt.key] = source

    state_dir = values.get("state_dir") or default_state_dir(env)
    values.setdefault("state_dir", state_dir)
    values.setdefault("spool", state_dir / "spool")
    values.setdefault("data_dir", default_data_dir(env))
    values.setdefault("host", socket.gethostname())
    for opt in OPTIONS:
        sources.setdefault(opt.key, "default")
    settings = Settings(config_file=toml_path, sources=sources, **values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    # Not urlsplit: it raises on some URIs (an unclosed IPv6 bracket); dsn.check reports those.
    if s.url is not None and s.url.partition(":")[0].lower() not in ("postgresql", "postgres"):
        raise ConfigError(
            "SESSION_DB_URL must be a libpq URI (postgresql://user@host/db), the same value psql accepts"
        )
    for opt in OPTIONS:
        value = getattr(s, opt.key)
        if (opt.bound == POSITIVE and value <= 0) or (opt.bound == NOT_NEGATIVE and value < 0):
            raise ConfigError(f"{opt.key} must be {opt.bound} ({s.sources[opt.key]})")
    if "/" in s.host or not s.host:
        raise ConfigError(
            f"host={s.host!r} must be a non-empty name without '/' ({s.sources['host']})"
        )


def mask_url(url: str | None) -> str | None:
    """The URL with any password (in the user part or the query) replaced by ***."""
    from daemon.dsn import mask

    return mask(url)


def describe(s: Settings) -> list[tuple[str, str, str]]:
    """(key, shown value, source) for every setting, the password masked."""
    rows: list[tuple[str, str, str]] = []
    for opt in OPTIONS:
        value = getattr(s, opt.key)
        if opt.key == "url":
            shown = mask_url(value) or "(embedded cluster)"
        elif opt.key == "redact_patterns":
            shown = json.dumps(list(value)) if value else "(none)"
        elif isinstance(value, tuple):
            sep = os.pathsep if opt.key == "watch" else ","
            shown = sep.join(str(v) for v in value) or "(none)"
        else:
            shown = "(none)" if value is None else str(value)
        rows.append((opt.key, shown, s.sources.get(opt.key, "default")))
    return rows
