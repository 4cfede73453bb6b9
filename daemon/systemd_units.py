"""`session-db service install`: write the systemd unit with this installation's paths.

The database URL (which may hold a password) goes into a 0600 environment file that the unit
reads with EnvironmentFile=, never into the unit text.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from daemon import durable
from daemon.errors import ConfigError
from daemon.resources import data_path

USER_UNIT = "session-db.service"
SYSTEM_UNIT = "session-db@.service"
USER_EXEC = "ExecStart=%h/.local/bin/session-db run"
SYSTEM_EXEC = "ExecStart=/usr/local/bin/session-db run"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_ENV_DIR = Path("/etc/session-db")
UNIT_FILE_MODE = 0o644  # systemd reads unit files as any user


@dataclass(frozen=True)
class Plan:
    """What `service install` writes and which commands start the service."""

    unit_path: Path
    unit_text: str
    env_path: Path
    env_text: str | None
    commands: list[list[str]]


def session_db_executable() -> Path:
    """The `session-db` of this installation (the one running now)."""
    beside = Path(sys.executable).with_name("session-db")
    if beside.exists():
        return beside
    found = shutil.which("session-db")
    if found is None:
        raise ConfigError(
            "cannot find the session-db executable: install session-db (pipx install session-db)"
        )
    return Path(found).resolve()


def env_file_text(url: str | None) -> str | None:
    if not url:
        return None
    if "\n" in url:
        raise ConfigError("SESSION_DB_URL contains a newline; fix the value")
    return f"# Written by `session-db service install`; keep this file mode 0600.\nSESSION_DB_URL={url}\n"


PATH_SETTINGS = ("SESSION_DB_STATE_DIR", "SESSION_DB_SPOOL", "SESSION_DB_CONFIG")


def path_environment(state_dir: Path, spool: Path, config_file: Path) -> str:
    """`Environment=` lines that pin the paths this installation resolved now.

    The installed hook has its spool path baked into its command line; a unit that resolved the
    XDG variables again under systemd (which passes none of the user's shell variables) could
    pick another spool. Writing the resolved paths into the unit keeps hook and daemon together.
    """
    values = dict(zip(PATH_SETTINGS, (state_dir, spool, config_file), strict=True))
    for name, value in values.items():
        if any(c in str(value) for c in '\n"\\%'):
            raise ConfigError(f"{name}={value!s} cannot be written into a unit file; choose a plainer path")
    return "".join(f'Environment="{name}={value}"\n' for name, value in values.items())


def _with_paths(unit_text: str, exec_line: str, environment: str) -> str:
    return unit_text.replace(exec_line, environment + exec_line)


def plan(
    system: bool, url: str | None, home: Path, user: str | None = None, *,
    state_dir: Path | None = None, spool: Path | None = None, config_file: Path | None = None,
) -> Plan:  # fmt: skip
    """What to write and run. With the three paths given (the CLI passes the effective
    settings), the unit runs the daemon on exactly those paths."""
    exe = session_db_executable()
    environment = (
        path_environment(state_dir, spool, config_file)
        if state_dir is not None and spool is not None and config_file is not None
        else ""
    )
    if system:
        user = user or os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
        text = (
            (data_path("systemd") / SYSTEM_UNIT)
            .read_text()
            .replace(SYSTEM_EXEC, f"ExecStart={exe} run")
        )
        text = _with_paths(text, f"ExecStart={exe} run", environment)
        return Plan(
            unit_path=SYSTEM_UNIT_DIR / SYSTEM_UNIT,
            unit_text=text,
            env_path=SYSTEM_ENV_DIR / f"{user}.env",
            env_text=env_file_text(url),
            commands=[
                ["systemctl", "daemon-reload"],
                ["systemctl", "enable", "--now", f"session-db@{user}"],
            ],
        )
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    text = (data_path("systemd") / USER_UNIT).read_text().replace(USER_EXEC, f"ExecStart={exe} run")
    text = _with_paths(text, f"ExecStart={exe} run", environment)
    return Plan(
        unit_path=config / "systemd" / "user" / USER_UNIT,
        unit_text=text,
        env_path=home / ".config" / "session-db" / "env",
        env_text=env_file_text(url),
        commands=[
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", "session-db"],
            ["loginctl", "enable-linger", pwd.getpwuid(os.getuid()).pw_name],
        ],
    )


def apply(p: Plan) -> None:
    try:
        p.unit_path.parent.mkdir(parents=True, exist_ok=True)
        durable.replace_file(p.unit_path, p.unit_text.encode(), UNIT_FILE_MODE)
        if p.env_text is not None:
            p.env_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            durable.replace_file(p.env_path, p.env_text.encode())  # 0600: it may hold a password
    except OSError as exc:
        raise ConfigError(
            f"cannot write {exc.filename or p.unit_path}: {exc.strerror}; run as the right user"
        ) from exc
