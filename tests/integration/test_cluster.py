"""Embedded PostgreSQL cluster: real initdb / pg_ctl / postgres processes and real files."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from daemon.cluster import (
    DBNAME,
    PG_BIN_ENV,
    SOCKET_PATH_MAX,
    SUPERUSER,
    ClusterError,
    EmbeddedCluster,
    PgBinaries,
    find_binaries,
    privilege_wrapper,
)
from tests.support.procs import gone

pytestmark = pytest.mark.slow  # every test starts a real cluster (5-16 s each)

MakeCluster = Callable[[Path], EmbeddedCluster]


@pytest.fixture(scope="module")
def binaries() -> PgBinaries:
    try:
        return find_binaries()
    except ClusterError as exc:
        pytest.skip(f"PostgreSQL server binaries not installed: {exc}")


def _cleanup(cluster: EmbeddedCluster) -> None:
    try:
        cluster.stop()
    finally:
        if not cluster.socket_dir.is_relative_to(cluster.state_dir):
            shutil.rmtree(cluster.socket_dir, ignore_errors=True)


@pytest.fixture
def make_cluster(binaries: PgBinaries) -> Iterator[MakeCluster]:
    """Factory for clusters that are always stopped (and their /tmp sockets removed)."""
    made: list[EmbeddedCluster] = []

    def make(state_dir: Path) -> EmbeddedCluster:
        cluster = EmbeddedCluster(state_dir, binaries)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        _cleanup(cluster)


@pytest.fixture(scope="module")
def running_cluster(
    binaries: PgBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedCluster]:
    """One started cluster shared by the tests that only read from it."""
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("shared"), binaries)
    cluster.ensure_started()
    yield cluster
    _cleanup(cluster)


@pytest.fixture
def short_state_dir(binaries: PgBinaries) -> Iterator[Path]:
    """A state directory short enough for the socket to live inside it.

    Teardown stops its cluster before deleting it: fixtures tear down in reverse order, so
    make_cluster's own stop may come too late to find the data directory.
    """
    path = Path(tempfile.mkdtemp(prefix="sdb-", dir="/tmp"))
    yield path
    try:
        EmbeddedCluster(path, binaries).stop()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _postmaster_pid(cluster: EmbeddedCluster) -> int:
    return int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])


def test_ensure_started_initialises_starts_connects_and_stops(
    make_cluster: MakeCluster, short_state_dir: Path, binaries: PgBinaries
) -> None:
    """A fresh state dir gets a cluster, a session_db database, a 0700 socket dir, and stops."""
    cluster = make_cluster(short_state_dir)
    with capture_logs() as events:
        started = cluster.ensure_started()
    assert started is True
    expected_events = ["cluster_initialised", "cluster_started"]
    assert expected_events == [e["event"] for e in events if e["event"] in expected_events]
    assert all(isinstance(e["duration_ms"], float) for e in events if "duration_ms" in e)
    assert short_state_dir / "pg" / "data" == cluster.data_dir
    assert (cluster.data_dir / "PG_VERSION").is_file()
    owner_only = 0o700
    assert owner_only == stat.S_IMODE(cluster.socket_dir.stat().st_mode)
    assert (
        f"bindir={binaries.bindir}\nmajor={binaries.major}\n"
        == (short_state_dir / "pg" / "BINARIES").read_text()
    )
    assert cluster.is_running() is True

    with psycopg.connect(cluster.url()) as conn:
        row = conn.execute(
            "SELECT current_database(), current_user, current_setting('listen_addresses'),"
            " pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    expected_row = (DBNAME, SUPERUSER, "", "UTF8")
    assert expected_row == row

    with capture_logs() as events:
        cluster.stop()
    expected_events = ["cluster_stopped"]
    assert expected_events == [e["event"] for e in events]
    assert cluster.is_running() is False
    assert (cluster.data_dir / "postmaster.pid").exists() is False


def test_stop_is_a_noop_when_not_running(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """stop() on a never-initialised or already stopped cluster neither fails nor logs."""
    cluster = make_cluster(tmp_path)
    with capture_logs() as events:
        cluster.stop()
        cluster.stop()
    no_events: list[object] = []
    assert no_events == events
    assert cluster.is_running() is False


def test_ensure_started_reuses_running_server(running_cluster: EmbeddedCluster) -> None:
    """A second ensure_started while the postmaster runs reuses it and returns False."""
    pid_before = _postmaster_pid(running_cluster)
    with capture_logs() as events:
        started = running_cluster.ensure_started()
    assert started is False
    expected = ["cluster_reused"]
    assert expected == [e["event"] for e in events]
    assert pid_before == _postmaster_pid(running_cluster)


def test_ensure_started_reuses_server_from_another_instance(
    running_cluster: EmbeddedCluster, binaries: PgBinaries
) -> None:
    """A new EmbeddedCluster for the same state dir (daemon restarted) adopts the postmaster."""
    again = EmbeddedCluster(running_cluster.state_dir, binaries)
    assert again.ensure_started() is False
    assert running_cluster.socket_dir == again.socket_dir


def test_url_and_psql_argv_connect(running_cluster: EmbeddedCluster) -> None:
    """url() works with psycopg.connect and psql_argv() with the real psql binary."""
    with psycopg.connect(running_cluster.url()) as conn:
        one_row = (1,)
        assert one_row == conn.execute("SELECT 1").fetchone()

    bundled = running_cluster.binaries.bindir / "psql"
    psql = str(bundled) if bundled.exists() else shutil.which("psql")
    if psql is None:
        pytest.skip("psql not installed")
    argv = running_cluster.psql_argv(psql)
    expected_argv = [
        psql,
        "-h",
        str(running_cluster.socket_dir),
        "-p",
        "5432",
        "-U",
        SUPERUSER,
        DBNAME,
    ]
    assert expected_argv == argv
    proc = subprocess.run(
        [*argv, "-X", "-A", "-t", "-c", "select 1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    expected = (0, "1")
    assert expected == (proc.returncode, proc.stdout.strip()), proc.stderr
    proc = subprocess.run(
        [psql, running_cluster.url(), "-X", "-A", "-t", "-c", "select current_database()"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    expected = (0, DBNAME)
    assert expected == (proc.returncode, proc.stdout.strip()), proc.stderr


def test_ensure_started_recovers_after_postmaster_kill9(
    make_cluster: MakeCluster, short_state_dir: Path
) -> None:
    """After kill -9 of the postmaster (stale postmaster.pid) the server restarts with its data."""
    cluster = make_cluster(short_state_dir)
    cluster.ensure_started()
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (n int)")
        conn.execute("INSERT INTO survivor VALUES (42)")

    pid = _postmaster_pid(cluster)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (cluster.data_dir / "postmaster.pid").exists() is True
    assert cluster.is_running() is False

    assert cluster.ensure_started() is True
    assert pid != _postmaster_pid(cluster)
    with psycopg.connect(cluster.url()) as conn:
        expected = [(42,)]
        assert expected == conn.execute("SELECT n FROM survivor").fetchall()


def test_ensure_started_ignores_lock_files_naming_unrelated_process(
    make_cluster: MakeCluster, short_state_dir: Path
) -> None:
    """Lock files whose pid now belongs to another live process (reboot) do not block a start."""
    cluster = make_cluster(short_state_dir)
    cluster.ensure_started()
    pid_file = cluster.data_dir / "postmaster.pid"
    socket_lock = cluster.socket_dir / ".s.PGSQL.5432.lock"
    saved = {path: path.read_text().splitlines() for path in (pid_file, socket_lock)}
    cluster.stop()

    with subprocess.Popen(["sleep", "60"]) as sleeper:
        try:
            for path, lines in saved.items():
                path.write_text("\n".join([str(sleeper.pid), *lines[1:]]) + "\n")
            assert cluster.is_running() is False
            assert cluster.ensure_started() is True
            assert sleeper.pid != _postmaster_pid(cluster)
            assert sleeper.poll() is None
        finally:
            sleeper.kill()


def test_ensure_started_restarts_server_of_moved_state_dir(
    binaries: PgBinaries, short_state_dir: Path
) -> None:
    """A state dir renamed under a running server: the postmaster is recognised (its lock file is
    not treated as stale), restarted for the new socket path, and the data is kept.

    PostgreSQL itself uses absolute paths, so its shutdown there ends in a PANIC and the next
    start runs crash recovery; the old socket lock file moved along and names the dead pid."""
    old = EmbeddedCluster(short_state_dir, binaries)
    old.ensure_started()
    old_pid = _postmaster_pid(old)
    with psycopg.connect(old.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE moved (n int)")
        conn.execute("INSERT INTO moved VALUES (7)")
    new_state_dir = short_state_dir.with_name(short_state_dir.name + "-moved")
    short_state_dir.rename(new_state_dir)
    new = EmbeddedCluster(new_state_dir, binaries)
    try:
        with capture_logs() as events:
            assert new.ensure_started() is True
        expected_events = ["cluster_restarting", "cluster_stopped", "cluster_started"]
        assert expected_events == [e["event"] for e in events if e["event"] in expected_events]
        assert gone(old_pid) is True
        with psycopg.connect(new.url()) as conn:
            expected = [(7,)]
            assert expected == conn.execute("SELECT n FROM moved").fetchall()
    finally:
        _cleanup(new)
        shutil.rmtree(new_state_dir, ignore_errors=True)


def test_ensure_started_refuses_major_version_mismatch(
    make_cluster: MakeCluster, short_state_dir: Path, binaries: PgBinaries
) -> None:
    """A data dir from another major version is refused with both versions and the fixes."""
    cluster = make_cluster(short_state_dir)
    cluster.ensure_started()
    cluster.stop()
    other = binaries.major - 1
    version_file = cluster.data_dir / "PG_VERSION"
    version_file.write_text(f"{other}\n")

    with pytest.raises(ClusterError) as excinfo:
        cluster.ensure_started()
    message = str(excinfo.value)
    for needle in (
        str(version_file),
        f"PostgreSQL {other}",
        f"PostgreSQL {binaries.major}",
        PG_BIN_ENV,
        "pg_upgrade",
        "pg_dump",
    ):
        assert needle in message, needle
    assert cluster.is_running() is False
    assert f"{other}\n" == version_file.read_text()


def test_socket_dir_falls_back_to_short_tmp_dir_for_long_state_dir(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A state dir too long for sun_path gets /tmp/session-db-<uid>-<hash>, 0700, and works."""
    state_dir = tmp_path / ("long-" + "x" * 80)
    cluster = make_cluster(state_dir)
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]
    assert Path(f"/tmp/session-db-{os.getuid()}-{digest}") == cluster.socket_dir
    assert len(f"{cluster.socket_dir}/.s.PGSQL.5432".encode()) <= SOCKET_PATH_MAX

    assert cluster.ensure_started() is True
    owner_only = 0o700
    assert owner_only == stat.S_IMODE(cluster.socket_dir.stat().st_mode)
    assert os.getuid() == cluster.socket_dir.stat().st_uid
    pid_file_lines = (cluster.data_dir / "postmaster.pid").read_text().splitlines()
    assert str(cluster.socket_dir) == pid_file_lines[4]
    with psycopg.connect(cluster.url()) as conn:
        expected = (1,)
        assert expected == conn.execute("SELECT 1").fetchone()


def test_socket_dir_stays_inside_short_state_dir(short_state_dir: Path) -> None:
    """A short state dir keeps its socket under state_dir/pg/run."""
    cluster = EmbeddedCluster(short_state_dir, PgBinaries(bindir=Path("/nonexistent"), major=15))
    assert short_state_dir / "pg" / "run" == cluster.socket_dir
    assert (
        f"postgresql://session_db@/session_db?host={short_state_dir}/pg/run&port=5432"
        == cluster.url()
    )


def test_ensure_started_concurrent_callers_start_once(
    make_cluster: MakeCluster, short_state_dir: Path
) -> None:
    """Two daemons starting at once: the flock makes exactly one initialise and start."""
    first, second = make_cluster(short_state_dir), make_cluster(short_state_dir)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [f.result() for f in [pool.submit(c.ensure_started) for c in (first, second)]]
    one_reused_one_started = [False, True]
    assert one_reused_one_started == sorted(results)
    with psycopg.connect(first.url()) as conn:
        expected = (1,)
        assert expected == conn.execute("SELECT 1").fetchone()


def test_find_binaries_override_must_hold_the_binaries(tmp_path: Path) -> None:
    """An override dir without initdb/pg_ctl/postgres is an error naming the setting."""
    with pytest.raises(ClusterError) as excinfo:
        find_binaries(str(tmp_path))
    assert PG_BIN_ENV in str(excinfo.value)
    assert "initdb" in str(excinfo.value)


def test_find_binaries_reads_env_when_no_override_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SESSION_DB_PG_BIN applies when the caller passes no (or an empty) override."""
    monkeypatch.setenv(PG_BIN_ENV, str(tmp_path))
    for override in (None, ""):
        with pytest.raises(ClusterError) as excinfo:
            find_binaries(override)
        assert f"{PG_BIN_ENV}={tmp_path}" in str(excinfo.value)


def test_find_binaries_override_reports_its_major(binaries: PgBinaries) -> None:
    """An explicit override is used as given, with the major version from postgres --version."""
    proc = subprocess.run(
        [str(binaries.bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    expected_major = int(proc.stdout.split(") ")[1].split(".")[0])
    assert PgBinaries(binaries.bindir, expected_major) == find_binaries(str(binaries.bindir))


def test_privilege_wrapper_is_unshare_only_for_root() -> None:
    """PostgreSQL refuses root, so root gets the user-namespace wrapper; others run directly."""
    wrapper = privilege_wrapper()
    if os.geteuid() == 0:
        expected = ["unshare", "--user", "--map-user=nobody"]
        assert expected == [Path(wrapper[0]).name, *wrapper[1:]]
    else:
        no_wrapper: list[str] = []
        assert no_wrapper == wrapper
