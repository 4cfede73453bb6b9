"""The embedded cluster's files and processes: its paths, locks, initdb, configuration, the
postmaster's pid file, and how PostgreSQL's tools are run.

`ClusterFiles` is the base of `cluster.EmbeddedCluster`, which holds the lifecycle (start,
reuse, share, stop, restart). See daemon/cluster.py's docstring for the layout and why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.durable import replace_file
from daemon.errors import ClusterError
from daemon.pg_binaries import (
    INSTALL_HINT,
    PG_BIN_ENV,
    PgBinaries,
    find_binaries,
    pg_env,
    privilege_wrapper,
)

SUPERUSER = "session_db"
DBNAME = "session_db"
SOCKET_PATH_MAX = 100
START_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10  # the set-up connection to the local socket
INITDB_TIMEOUT_S = 120
SCRATCH_PREFIX = "data.initdb."  # + a random suffix: one fresh directory per initdb attempt

PORT = 5432
SOCKET_NAME = f".s.PGSQL.{PORT}"
LOCK_TIMEOUT_S = 2 * START_TIMEOUT_S + 10
STOP_TIMEOUT_S = START_TIMEOUT_S
LOG_TAIL_BYTES = 4000
LOG_ROTATE_BYTES = 10 * 1024 * 1024
CONF_NAME = "session_db.conf"
BINARIES_FILE_MODE = 0o644  # pg/BINARIES: read by every user that shares the cluster
CONF_FILE_MODE = 0o600  # like the postgresql.conf initdb writes
_SHELL_UNSAFE = ('"', "`", "$", "\\", "\n")

log = structlog.get_logger("daemon.cluster")  # the cluster's component name in log lines


def ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def check_shell_safe(path: Path, what: str) -> None:
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


class ClusterFiles:
    """The files and PostgreSQL processes of one state directory's cluster."""

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

    @property
    def binaries(self) -> PgBinaries:
        if self._binaries is None:
            self._binaries = find_binaries()
        return self._binaries

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
                env=pg_env(),
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
            duration_ms=ms_since(start),
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
        replace_file(self.binaries_path, text.encode(), BINARIES_FILE_MODE)

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
        replace_file(path, text.encode(), CONF_FILE_MODE)

    # ----------------------------------------------------------------- pid files and log

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

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
