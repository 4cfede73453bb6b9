"""Private embedded PostgreSQL cluster under the daemon's state directory.

When the user gives no ``SESSION_DB_URL`` the daemon runs its own cluster:

* data directory ``<state>/pg/data``, server log ``<state>/pg/postgres.log``;
* no TCP listener (``listen_addresses = ''``); clients connect through a Unix socket in a
  directory with mode 0700, so ``trust`` authentication admits only the owning user;
* everything happens under an exclusive ``flock`` on ``<state>/pg/lock`` so that two daemons
  starting at once neither run ``initdb`` twice nor start two postmasters.

PostgreSQL refuses to run as root. When we are root the binaries run inside a user namespace
(``unshare --user --map-user=nobody``): inside, the process is "nobody", outside it is still
root, so the files stay owned by root and root can connect through the socket.

All subprocesses take argument lists, never a shell. ``pg_ctl`` itself builds a ``/bin/sh``
command line from the data directory and log paths, so paths containing shell-special quote
characters are refused up front (:func:`_check_shell_safe`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import structlog
from psycopg import errors, sql

from daemon import db
from daemon.errors import ClusterError

PG_BIN_ENV = "SESSION_DB_PG_BIN"
SUPERUSER = "session_db"
DBNAME = "session_db"
SOCKET_PATH_MAX = 100
START_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10  # the set-up connection to the local socket
INITDB_TIMEOUT_S = 120
SCRATCH_PREFIX = "data.initdb."  # + a random suffix: one fresh directory per initdb attempt

PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
MIN_MAJOR = db.MIN_SERVER_MAJOR
LOCK_TIMEOUT_S = 2 * START_TIMEOUT_S + 10
STOP_TIMEOUT_S = START_TIMEOUT_S
LOG_TAIL_BYTES = 4000
LOG_ROTATE_BYTES = 10 * 1024 * 1024
CONF_NAME = "session_db.conf"
INSTALL_HINT = (
    "install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
    f"`brew install postgresql`) or set {PG_BIN_ENV} to the directory holding "
    "initdb, pg_ctl and postgres"
)
_REQUIRED = ("initdb", "pg_ctl", "postgres")
_SHELL_UNSAFE = ('"', "`", "$", "\\", "\n")
_SHM_IN_USE = "pre-existing shared memory block"

log = structlog.get_logger(__name__)


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


# --------------------------------------------------------------------------- helpers


def _pg_env() -> dict[str, str]:
    """Environment for PostgreSQL subprocesses: English messages, no stray PG* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def _check_shell_safe(path: Path, what: str) -> None:
    bad = [ch for ch in _SHELL_UNSAFE if ch in str(path)]
    if bad:
        raise ClusterError(
            f"{what} {str(path)!r} contains {bad!r}, which pg_ctl cannot quote for its shell; "
            "choose a state directory without quotes, backslashes, '$' or newlines"
        )


def _conf_string(value: str) -> str:
    """Quote ``value`` as a postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _proc_state(pid: int) -> str | None:
    """Linux process state letter from /proc, or None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # The command name is in parentheses and may contain spaces; the state follows it.
    return stat.rsplit(")", 1)[1].split()[0]


@dataclass(frozen=True)
class _PidFile:
    pid: int
    socket_dir: str
    status: str


class EmbeddedCluster:
    """The private cluster of one state directory. See the module docstring."""

    def __init__(self, state_dir: Path, binaries: PgBinaries | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        self._binaries = binaries
        self.pg_dir = self.state_dir / "pg"
        self.data_dir = self.pg_dir / "data"
        self.log_path = self.pg_dir / "postgres.log"
        self.lock_path = self.pg_dir / "lock"
        self.binaries_path = self.pg_dir / "BINARIES"
        self.users_path = self.pg_dir / "users"
        self._users_fd: int | None = None  # our shared flock on users_path while we use the cluster
        self.socket_dir = self._choose_socket_dir()
        self._wrapper: list[str] | None = None

    # ----------------------------------------------------------------- public

    def url(self) -> str:
        """libpq URI for psql and psycopg (port explicit, so a PGPORT in the shell cannot misdirect it)."""
        return f"postgresql://{SUPERUSER}@/{DBNAME}?host={quote(str(self.socket_dir))}&port={PORT}"

    def psql_argv(self, psql: str = "psql") -> list[str]:
        """The psql command to show users."""
        return [psql, "-h", str(self.socket_dir), "-p", str(PORT), "-U", SUPERUSER, DBNAME]

    @property
    def binaries(self) -> PgBinaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

    def ensure_started(self) -> bool:
        """Initialise (once) and start the cluster, and create the database if missing.

        Returns True when this call started the server, False when it reused a postmaster
        already running on this data directory (e.g. left over after the daemon was killed).
        """
        with self._locked() as lock_fd:
            _check_shell_safe(self.data_dir, "data directory")
            _check_shell_safe(self.log_path, "log file")
            self._register_user()
            self._prepare_socket_dir()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(lock_fd)
            self._check_version()
            self._write_binaries_file()
            self._write_conf()
            started = self._start_or_reuse()
            self._ensure_database()
            return started

    def release(self) -> bool:
        """This process stops using the cluster; the last user out stops it.

        Every user (daemon, one-shot command) holds a shared ``flock`` on ``<state>/pg/users``
        from :meth:`ensure_started` until here. Under the cluster lock we drop ours and try
        an exclusive one: granted means no other process uses the cluster, so we stop it;
        refused means another user still needs it, so it keeps running. A user starting
        meanwhile waits for the cluster lock, then finds the server stopped and starts it.
        Returns True when this call stopped the server.
        """
        if self._users_fd is None:
            return False
        with self._locked():
            os.close(self._users_fd)
            self._users_fd = None
            fd = os.open(self.users_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.info("cluster_left_running", reason="other users remain")
                    return False
                self._stop_unlocked()
                return True
            finally:
                os.close(fd)

    def restart_if_gone(self) -> bool:
        """Start the server again when its postmaster died (OOM killer, kill -9).

        Called by a running daemon that lost its connection; returns True when it restarted
        the server. Raises ClusterError when it cannot (the daemon logs it and retries).
        """
        if self.is_running():
            return False
        start = time.monotonic()
        self.ensure_started()
        pidfile = self._read_pid_file()
        log.warning(
            "cluster_restarted",
            pid=pidfile.pid if pidfile else None,
            data_dir=str(self.data_dir),
            duration_ms=_ms(start),
        )
        return True

    def stop(self) -> None:
        """Fast shutdown (``pg_ctl stop -m fast -w``); nothing to do when not running."""
        if not self.pg_dir.is_dir():
            return
        with self._locked():
            self._stop_unlocked()

    def is_running(self) -> bool:
        """Whether a live postmaster serves this data directory (``pg_ctl status``)."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        if self._pid_file_is_stale():
            return False
        proc = self._run_pg("pg_ctl", ["-D", str(self.data_dir), "status"], timeout=30)
        if proc.returncode == 0:
            return True
        if proc.returncode in (3, 4):  # not running / no accessible data directory
            return False
        raise self._error("`pg_ctl status` failed", proc)

    # ----------------------------------------------------------------- paths and locking

    def _choose_socket_dir(self) -> Path:
        preferred = self.pg_dir / "run"
        if len(os.fsencode(f"{preferred}/{SOCKET_NAME}")) <= SOCKET_PATH_MAX:
            return preferred
        digest = hashlib.sha256(os.fsencode(str(self.state_dir))).hexdigest()[:8]
        return Path(f"/tmp/session-db-{os.getuid()}-{digest}")  # noqa: S108 - checked 0700

    def _prepare_socket_dir(self) -> None:
        path = self.socket_dir
        path.mkdir(mode=0o700, parents=path.is_relative_to(self.pg_dir), exist_ok=True)
        st = path.lstat()
        if path.is_symlink() or not path.is_dir() or st.st_uid != os.getuid():
            raise ClusterError(
                f"socket directory {path} is not a directory owned by uid {os.getuid()} "
                "(someone else created it?); remove it, or use a shorter state directory so "
                "the socket can live inside it"
            )
        if st.st_mode & 0o077:
            path.chmod(0o700)

    def _register_user(self) -> None:
        """Hold a shared flock on the users file until release() (under the cluster lock)."""
        if self._users_fd is not None:
            return
        fd = os.open(self.users_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # an exclusive holder holds the cluster lock too: brief
        self._users_fd = fd

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        self.pg_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ClusterError(
                            f"another process holds {self.lock_path} for over "
                            f"{LOCK_TIMEOUT_S} s; check for a hung session-db daemon "
                            f"(`fuser {self.lock_path}`)"
                        ) from None
                    time.sleep(0.05)
            yield fd
        finally:
            os.close(fd)

    # ----------------------------------------------------------------- subprocesses

    def _run_pg(
        self, tool: str, args: list[str], *, timeout: float, pass_fds: tuple[int, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        if self._wrapper is None:
            self._wrapper = privilege_wrapper()
        argv = [*self._wrapper, str(self.binaries.tool(tool)), *args]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=_pg_env(),
                cwd=self.pg_dir,
                timeout=timeout,
                check=False,
                pass_fds=pass_fds,
            )
        except OSError as exc:
            raise ClusterError(f"cannot run {argv[0]}: {exc}; {INSTALL_HINT}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(
                f"`{tool} {' '.join(args)}` did not finish within {timeout:.0f} s; "
                f"see {self.log_path}:\n{self._log_tail()}"
            ) from exc

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no server log yet)"

    def _error(self, what: str, proc: subprocess.CompletedProcess[str]) -> ClusterError:
        output = (proc.stdout + proc.stderr).strip()
        hint = ""
        if "unshare" in output and self._wrapper:
            hint = (
                "\nhint: PostgreSQL cannot run as root and `unshare --user` failed here "
                "(user namespaces disabled, or util-linux older than 2.38); run session-db "
                "as an unprivileged user or set SESSION_DB_URL"
            )
        return ClusterError(
            f"{what} (exit {proc.returncode}) for data directory {self.data_dir}:\n"
            f"{output}{hint}\n--- tail of {self.log_path} ---\n{self._log_tail()}"
        )

    # ----------------------------------------------------------------- init

    def _initdb(self, lock_fd: int) -> None:
        start = time.monotonic()
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()):
                raise ClusterError(
                    f"{self.data_dir} exists but has no PG_VERSION, so it is not a "
                    "PostgreSQL data directory; move it away and start again"
                )
            self.data_dir.rmdir()
        # initdb into a fresh scratch directory and rename: an interrupted initdb never leaves
        # a half-made data directory behind. initdb inherits the cluster lock, so when we are
        # killed (-9) the orphaned initdb still holds it: the next start waits for it to end
        # instead of deleting a directory it is still writing, and leftovers are then dead.
        self._remove_scratch_dirs()
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=self.pg_dir))
        proc = self._run_pg(
            "initdb",
            [
                "-D",
                str(scratch),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=reject",
            ],
            timeout=INITDB_TIMEOUT_S,
            pass_fds=(lock_fd,),
        )
        if proc.returncode != 0:
            raise self._error("initdb failed", proc)
        with (scratch / "postgresql.conf").open("a") as fh:
            fh.write(
                "\n# session-db: no TCP listener; socket directory and port are in "
                f"{CONF_NAME}, rewritten on every start\n"
                "listen_addresses = ''\n"
                f"include = {_conf_string(CONF_NAME)}\n"
            )
        scratch.rename(self.data_dir)
        log.info(
            "cluster_initialised",
            data_dir=str(self.data_dir),
            major=self.binaries.major,
            duration_ms=_ms(start),
        )

    def _remove_scratch_dirs(self) -> None:
        """Delete scratch directories of earlier, interrupted attempts (we hold the lock, and
        their initdb held it until it ended, so none is being written)."""
        for old in self.pg_dir.glob(SCRATCH_PREFIX.rstrip(".") + "*"):  # and the old fixed name
            try:
                shutil.rmtree(old)
            except OSError as exc:
                log.warning("cluster_scratch_left", path=str(old), error=str(exc))
            else:
                log.info("cluster_scratch_removed", path=str(old))

    def _check_version(self) -> None:
        version_file = self.data_dir / "PG_VERSION"
        found = version_file.read_text().strip()
        want = self.binaries.major
        if found != str(want):
            raise ClusterError(
                f"{version_file} says the cluster was created by PostgreSQL {found}, but the "
                f"binaries in {self.binaries.bindir} are PostgreSQL {want}; point "
                f"{PG_BIN_ENV} at a PostgreSQL {found} bin directory, or upgrade the cluster "
                f"(pg_upgrade, or pg_dump with the old version and restore into a fresh "
                f"{want} cluster after moving {self.data_dir} away)"
            )

    def _write_binaries_file(self) -> None:
        text = f"bindir={self.binaries.bindir}\nmajor={self.binaries.major}\n"
        with contextlib.suppress(FileNotFoundError):
            if self.binaries_path.read_text() == text:
                return
        tmp = self.binaries_path.with_name("BINARIES.tmp")
        tmp.write_text(text)
        tmp.replace(self.binaries_path)

    def _write_conf(self) -> None:
        sockdir = '"' + str(self.socket_dir).replace('"', '""') + '"'
        text = (
            "# Managed by session-db (daemon/cluster.py); rewritten on every start.\n"
            "listen_addresses = ''\n"
            f"port = {PORT}\n"
            f"unix_socket_directories = {_conf_string(sockdir)}\n"
            "unix_socket_permissions = 0700\n"
        )
        path = self.data_dir / CONF_NAME
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return
        tmp = path.with_name(CONF_NAME + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    # ----------------------------------------------------------------- start / stop

    def _read_pid_file(self) -> _PidFile | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None  # being written, or garbage: let pg_ctl decide
        socket_dir = lines[4].strip() if len(lines) > 4 else ""
        status = lines[7].strip() if len(lines) > 7 else ""
        return _PidFile(pid=pid, socket_dir=socket_dir, status=status)

    def _pid_is_stale(self, pid: int) -> bool:
        """True when ``pid`` is certainly not a postmaster serving our data directory.

        ``pg_ctl status`` and postgres itself only probe lock-file pids with kill(0), which
        succeeds for a zombie (a killed postmaster nobody has reaped yet, e.g. under a
        container init that does not reap) and for an unrelated process that reused the pid
        after a reboot. Both would block a restart forever, so on Linux we look closer;
        elsewhere we trust kill(0).
        """
        if not Path("/proc/self/stat").exists():
            return False
        state = _proc_state(pid)
        if state is None or state in ("Z", "X"):
            return True
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            # The postmaster chdirs into its data directory; comparing inodes also holds
            # when the state directory was moved while the server kept running.
            in_data_dir = Path(f"/proc/{pid}/cwd").samefile(self.data_dir)
        except FileNotFoundError:
            return True  # exited meanwhile
        except OSError:
            return False  # cannot tell (permissions); assume it is ours
        is_postgres = Path(os.fsdecode(argv0)).name in ("postgres", "postmaster")
        return not (is_postgres and in_data_dir)

    def _pid_file_is_stale(self) -> bool:
        pidfile = self._read_pid_file()
        return pidfile is not None and self._pid_is_stale(pidfile.pid)

    def _remove_stale_lock_files(self) -> None:
        """Remove postmaster.pid and the socket lock file when they name a dead postmaster."""
        for lock_file in (
            self.data_dir / "postmaster.pid",
            self.socket_dir / f"{SOCKET_NAME}.lock",
        ):
            try:
                pid = int(lock_file.read_text().splitlines()[0])
            except (FileNotFoundError, IndexError, ValueError):
                continue  # absent, or being written: leave it to postgres
            if self._pid_is_stale(pid):
                log.warning("cluster_stale_lock_removed", lock_file=str(lock_file), pid=pid)
                with contextlib.suppress(FileNotFoundError):
                    lock_file.unlink()

    def _wait_ready(self, deadline: float) -> bool:
        """Wait for a running postmaster to accept connections; False if it went away."""
        while True:
            pidfile = self._read_pid_file()
            if pidfile is None or not self.is_running():
                return False
            if pidfile.status in ("ready", "standby"):
                return True
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the postmaster (PID {pidfile.pid}) on {self.data_dir} has been "
                    f"{pidfile.status!r} for over {START_TIMEOUT_S} s; see {self.log_path}:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.1)

    def _start_or_reuse(self) -> bool:
        start = time.monotonic()
        self._remove_stale_lock_files()
        if self.is_running():
            pidfile = self._read_pid_file()
            ready = self._wait_ready(start + START_TIMEOUT_S)
            if ready and pidfile is not None and pidfile.socket_dir == str(self.socket_dir):
                log.info(
                    "cluster_reused",
                    pid=pidfile.pid,
                    socket_dir=str(self.socket_dir),
                    duration_ms=_ms(start),
                )
                return False
            if ready:
                # Started for another socket directory (state directory moved?): restart so
                # that url() and psql_argv() are true.
                log.info(
                    "cluster_restarting",
                    reason="socket_dir_changed",
                    old_socket_dir=pidfile.socket_dir if pidfile else None,
                    socket_dir=str(self.socket_dir),
                )
                self._stop_unlocked()
        self._start()
        return True

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))

    def _start(self) -> None:
        start = time.monotonic()
        deadline = start + START_TIMEOUT_S
        self._rotate_log()
        args = [
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        ]
        while True:
            self._remove_stale_lock_files()
            log_size = self.log_path.stat().st_size if self.log_path.exists() else 0
            proc = self._run_pg("pg_ctl", args, timeout=START_TIMEOUT_S + 15)
            if proc.returncode == 0:
                break
            # After a kill -9 of the postmaster its children may still hold the old shared
            # memory segment for a moment; postgres then refuses to start. Retry briefly.
            new_log = self._log_since(log_size)
            if _SHM_IN_USE in new_log and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise self._error("`pg_ctl start` failed", proc)
        pidfile = self._read_pid_file()
        log.info(
            "cluster_started",
            pid=pidfile.pid if pidfile else None,
            socket_dir=str(self.socket_dir),
            major=self.binaries.major,
            duration_ms=_ms(start),
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _stop_unlocked(self) -> None:
        if not self.is_running():
            return
        start = time.monotonic()
        proc = self._run_pg(
            "pg_ctl",
            ["-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S), "stop"],
            timeout=STOP_TIMEOUT_S + 15,
        )
        if proc.returncode != 0 and self.is_running():
            raise self._error("`pg_ctl stop -m fast` failed", proc)
        log.info("cluster_stopped", data_dir=str(self.data_dir), duration_ms=_ms(start))

    # ----------------------------------------------------------------- database

    def _ensure_database(self) -> None:
        start = time.monotonic()
        deadline = start + START_TIMEOUT_S
        while True:
            try:
                conninfo = psycopg.conninfo.make_conninfo(
                    host=str(self.socket_dir), port=PORT, user=SUPERUSER, dbname="postgres"
                )
                with db.connect(
                    conninfo, connect_timeout_s=CONNECT_TIMEOUT_S, autocommit=True
                ) as conn:
                    exists = conn.execute(db.SELECT_DATABASE_EXISTS, (DBNAME,)).fetchone()
                    if exists is None:
                        with contextlib.suppress(errors.DuplicateDatabase):
                            conn.execute(db.CREATE_DATABASE.format(sql.Identifier(DBNAME)))
                        log.info("cluster_database_created", dbname=DBNAME, duration_ms=_ms(start))
                    return
            except psycopg.OperationalError as exc:
                # "the database system is starting up": a reused server still in recovery.
                if "starting up" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                raise ClusterError(
                    f"cannot connect to the embedded cluster through {self.socket_dir} "
                    f"({exc}); see {self.log_path}:\n{self._log_tail()}"
                ) from exc
