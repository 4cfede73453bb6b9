"""Where the PostgreSQL server binaries are, which major version they are, how they run as root.

Order of the search: ``$SESSION_DB_PG_BIN``, ``pg_config --bindir``, the directory of ``pg_ctl``
on ``PATH``, the highest ``/usr/lib/postgresql/*/bin``. PostgreSQL refuses to run as root, so
as root the binaries run inside a user namespace (``privilege_wrapper``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from daemon import db
from daemon.errors import ClusterError

PG_BIN_ENV = "SESSION_DB_PG_BIN"
MIN_MAJOR = db.MIN_SERVER_MAJOR
INSTALL_HINT = (
    "install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
    f"`brew install postgresql`) or set {PG_BIN_ENV} to the directory holding "
    "initdb, pg_ctl and postgres"
)
_REQUIRED = ("initdb", "pg_ctl", "postgres")


@dataclass(frozen=True)
class PgBinaries:
    """A directory holding ``initdb``, ``pg_ctl`` and ``postgres`` of one major version."""

    bindir: Path
    major: int

    def tool(self, name: str) -> Path:
        return self.bindir / name


# --------------------------------------------------------------------------- binaries


def _has_all(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        proc = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = proc.stdout.strip()
    return Path(out) if proc.returncode == 0 and out else None


def _path_pg_ctl_dirs() -> list[Path]:
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        return []
    # A symlink farm such as /usr/local/bin may hold only pg_ctl; then its real directory
    # (/usr/lib/postgresql/NN/bin, a Homebrew Cellar) holds the rest.
    return [Path(pg_ctl).parent, Path(pg_ctl).resolve().parent]


def _debian_bindirs() -> list[Path]:
    found: list[tuple[int, Path]] = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        with contextlib.suppress(ValueError):
            found.append((int(candidate.parent.name), candidate))
    return [path for _, path in sorted(found, reverse=True)]


def _major_of(bindir: Path) -> int:
    postgres = bindir / "postgres"
    try:
        # --version is answered before postgres' "cannot run as root" check.
        proc = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"cannot run `{postgres} --version`: {exc}; {INSTALL_HINT}") from exc
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise ClusterError(
            f"`{postgres} --version` printed {proc.stdout.strip() or proc.stderr.strip()!r}, "
            f"not a PostgreSQL version; {INSTALL_HINT}"
        )
    major = int(match.group(1))
    if major < MIN_MAJOR:
        raise ClusterError(
            f"{postgres} is PostgreSQL {major}, older than the supported {MIN_MAJOR}; "
            f"{INSTALL_HINT}"
        )
    return major


def find_binaries(override: str | None = None) -> PgBinaries:
    """Locate the PostgreSQL server binaries.

    Order: ``override`` (default: ``$SESSION_DB_PG_BIN``), ``pg_config --bindir``, the
    directory of ``pg_ctl`` on ``PATH``, the highest ``/usr/lib/postgresql/*/bin``.
    An empty override counts as unset. An explicit override that lacks a binary is an error,
    never silently skipped.
    """
    chosen = override or os.environ.get(PG_BIN_ENV) or None
    if chosen is not None:
        bindir = Path(chosen).expanduser()
        missing = [name for name in _REQUIRED if not os.access(bindir / name, os.X_OK)]
        if missing:
            raise ClusterError(
                f"{PG_BIN_ENV}={chosen} does not hold executable {', '.join(missing)}; "
                f"point {PG_BIN_ENV} at PostgreSQL's bin directory "
                "(e.g. /usr/lib/postgresql/15/bin) or unset it"
            )
        return PgBinaries(bindir=bindir, major=_major_of(bindir))

    candidates: list[Path] = []
    pg_config_dir = _pg_config_bindir()
    if pg_config_dir is not None:
        candidates.append(pg_config_dir)
    candidates.extend(_path_pg_ctl_dirs())
    candidates.extend(_debian_bindirs())
    for bindir in candidates:
        if _has_all(bindir):
            return PgBinaries(bindir=bindir, major=_major_of(bindir))
    raise ClusterError(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via "
        f"{PG_BIN_ENV}, `pg_config --bindir`, PATH or /usr/lib/postgresql/*/bin; {INSTALL_HINT}; "
        "or set SESSION_DB_URL to use an existing server"
    )


def privilege_wrapper() -> list[str]:
    """Argv prefix that lets the PostgreSQL binaries run when we are root.

    PostgreSQL refuses to run as root; inside a fresh user namespace with our uid mapped to
    "nobody" it runs unprivileged while its files stay owned by root outside.
    """
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ClusterError(
            "running as root, and PostgreSQL refuses to run as root; the embedded cluster "
            "needs `unshare` (util-linux >= 2.38) to drop privileges: install util-linux, "
            "run session-db as an unprivileged user, or set SESSION_DB_URL"
        )
    return [unshare, "--user", "--map-user=nobody"]


def pg_env() -> dict[str, str]:
    """Environment for PostgreSQL subprocesses: English messages, no stray PG* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env
