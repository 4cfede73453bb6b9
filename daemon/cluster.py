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
import os
import time
from urllib.parse import quote

import psycopg
import structlog
from psycopg import errors, sql

from daemon import db
from daemon.cluster_files import (
    CONNECT_TIMEOUT_S,
    DBNAME,
    PORT,
    SOCKET_PATH_MAX,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    SUPERUSER,
    ClusterFiles,
    check_shell_safe,
    ms_since,
)
from daemon.errors import ClusterError
from daemon.pg_binaries import PG_BIN_ENV, PgBinaries, find_binaries, privilege_wrapper

__all__ = [
    "DBNAME",
    "PG_BIN_ENV",
    "SOCKET_PATH_MAX",
    "SUPERUSER",
    "ClusterError",
    "EmbeddedCluster",
    "PgBinaries",
    "find_binaries",
    "privilege_wrapper",
]

_SHM_IN_USE = "pre-existing shared memory block"

log = structlog.get_logger(__name__)


class EmbeddedCluster(ClusterFiles):
    """The private cluster of one state directory: start or reuse it, share it, stop it."""

    # ----------------------------------------------------------------- public

    def url(self) -> str:
        """libpq URI for psql and psycopg (port explicit, so a PGPORT in the shell cannot misdirect it)."""
        return f"postgresql://{SUPERUSER}@/{DBNAME}?host={quote(str(self.socket_dir))}&port={PORT}"

    def psql_argv(self, psql: str = "psql") -> list[str]:
        """The psql command to show users."""
        return [psql, "-h", str(self.socket_dir), "-p", str(PORT), "-U", SUPERUSER, DBNAME]

    def ensure_started(self) -> bool:
        """Initialise (once) and start the cluster, and create the database if missing.

        Returns True when this call started the server, False when it reused a postmaster
        already running on this data directory (e.g. left over after the daemon was killed).
        """
        with self._locked() as lock_fd:
            check_shell_safe(self.data_dir, "data directory")
            check_shell_safe(self.log_path, "log file")
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
            duration_ms=ms_since(start),
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

    # ----------------------------------------------------------------- start / stop

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
                    duration_ms=ms_since(start),
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
            duration_ms=ms_since(start),
        )

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
        log.info("cluster_stopped", data_dir=str(self.data_dir), duration_ms=ms_since(start))

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
                        log.info(
                            "cluster_database_created", dbname=DBNAME, duration_ms=ms_since(start)
                        )
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
