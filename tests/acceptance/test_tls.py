"""TLS DSNs against a local server with a self-signed certificate, and the password's secrecy.

One server for the module: ssl=on with a certificate for 127.0.0.1/localhost (made with
openssl here), and password authentication (pytest-postgresql's initdb --auth=password), so a
wrong password really is refused by the server rather than ignored by trust authentication.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql.executors import PostgreSQLExecutor

from daemon import migrations
from tests.acceptance.conftest import Daemon, Env, cli, wait_for
from tests.conftest import PG_CTL, PG_USER
from tests.support.workload import spool_workload

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
SUPERUSER_PASSWORD = "Tls-Sup3r-pa55-Zq7"  # the server's real password
WRONG_PASSWORD = "Wr0ng-pa55-Xk9"  # distinctive, so finding it anywhere in output is a leak
TEMPLATE = "sd_tmpl"


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 and its key (mode 0600)."""
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    # PostgreSQL refuses a key readable by others. As root the server runs as the namespace's
    # `nobody`, which is root outside (tests/support/pg_ctl): root's 0600 file is its own.
    key.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return crt, key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SecureServer:
    """The TLS, password-authenticated server and its certificates."""

    port: int
    cert: Path
    other_cert: Path  # a certificate that did not sign the server's

    def url(
        self,
        dbname: str,
        password: str | None = SUPERUSER_PASSWORD,
        host: str = "127.0.0.1",
        query_password: str | None = None,
        **params: str,
    ) -> str:
        """A URI for dbname; the password in the userinfo, or with query_password in the query."""
        auth = f"{PG_USER}:{quote(password, safe='')}" if password else PG_USER
        if query_password is not None:
            params = {**params, "password": query_password}
        query = f"?{urlencode(params, safe='/')}" if params else ""
        return f"postgresql://{auth}@{host}:{self.port}/{dbname}{query}"


def accepts_connections(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder, "server")
    other_cert, _ = make_certificate(folder, "other")
    port = free_port()
    proc = PostgreSQLExecutor(
        executable=PG_CTL,
        host="127.0.0.1",
        port=port,
        datadir=str(folder / "data"),
        unixsocketdir="/tmp",
        logfile=str(folder / "postgresql.log"),
        startparams="-w",
        dbname=TEMPLATE,
        user=PG_USER,
        password=SUPERUSER_PASSWORD,
        postgres_options=f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}",
    )
    proc.start()
    try:
        proc.wait_for_postgres()
        server = SecureServer(port, cert, other_cert)
        wait_for(lambda: accepts_connections(server.url("postgres")), what="the TLS server")
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        migrations.upgrade(server.url(TEMPLATE))
        yield server
    finally:
        proc.stop()


_names = itertools.count()


@pytest.fixture
def dbname(secure: SecureServer) -> Iterator[str]:
    """A fresh migrated database on the secure server, dropped after the test."""
    name = f"tls{os.getpid()}_{next(_names)}"
    with psycopg.connect(secure.url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE)
            )
        )
    yield name
    with psycopg.connect(secure.url("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def hook_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM agent_logs WHERE event_category = 'hook'"
        ).fetchone()
    assert row is not None
    return int(row[0])


# --- TLS ----------------------------------------------------------------------------------


def test_tls_sslmode_require_daemon_connection_is_encrypted(
    secure: SecureServer, dbname: str, tmp_path: Path
) -> None:
    """With sslmode=require the running daemon ingests, and the server reports its session as TLS."""
    env = Env(tmp_path, secure.url(dbname, sslmode="require"))
    work = spool_workload(tmp_path, env.spool)
    daemon = Daemon(env, tmp_path / "daemon.log")
    try:
        wait_for(lambda: hook_rows(env.db_url) == len(work.uids), what="rows over TLS")
        with psycopg.connect(secure.url(dbname, sslmode="disable")) as conn:
            daemons = conn.execute(
                "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                " WHERE a.application_name = 'session-db' AND a.datname = current_database()"
            ).fetchall()
            mine = conn.execute(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone()
        assert daemons, "no session-db connection seen"
        assert all(ssl for ssl, _ in daemons), daemons
        assert (
            False,
        ) == mine  # the server also takes plain connections: the check above means something
        assert 0 == daemon.stop()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_verify_full_with_the_servers_certificate_ingests(
    secure: SecureServer, dbname: str, tmp_path: Path, host: str
) -> None:
    """sslmode=verify-full with sslrootcert = the self-signed certificate accepts the server by IP or name."""
    url = secure.url(dbname, host=host, sslmode="verify-full", sslrootcert=str(secure.cert))
    env = Env(tmp_path, url)
    work = spool_workload(tmp_path, env.spool, limit=5)
    done = cli(env, "ingest", "--once")
    assert 0 == done.returncode, done.stderr[-3000:]
    assert len(work.uids) == hook_rows(secure.url(dbname))


def test_tls_verify_full_with_a_wrong_root_fails_clearly_without_the_password(
    secure: SecureServer, dbname: str, tmp_path: Path
) -> None:
    """A server certificate that the given root did not sign is refused with libpq's reason; no password shown."""
    url = secure.url(dbname, sslmode="verify-full", sslrootcert=str(secure.other_cert))
    env = Env(tmp_path, url)
    spool_workload(tmp_path, env.spool, limit=3)
    done = cli(env, "ingest", "--once")
    assert 0 != done.returncode
    assert "certificate verify failed" in done.stderr
    assert SUPERUSER_PASSWORD not in done.stdout + done.stderr
    assert 3 == len(list((env.spool / "new").iterdir()))


# --- the password never shows --------------------------------------------------------------


def failing_urls(secure: SecureServer) -> dict[str, str]:
    """DSNs that fail in different places, each carrying WRONG_PASSWORD."""
    closed = free_port()
    wrong = quote(WRONG_PASSWORD, safe="")
    return {
        "auth_failed": secure.url(TEMPLATE, password=WRONG_PASSWORD, sslmode="require"),
        "auth_failed_query": secure.url(TEMPLATE, password=None, query_password=WRONG_PASSWORD),
        "refused": f"postgresql://{PG_USER}:{wrong}@127.0.0.1:{closed}/db",
        "wrong_root": secure.url(
            TEMPLATE,
            password=WRONG_PASSWORD,
            sslmode="verify-full",
            sslrootcert=str(secure.other_cert),
        ),
        # libpq quotes these back in its error message: the bad token, the whole URI
        "bad_percent": f"postgresql://{PG_USER}:{wrong}%zz@127.0.0.1:{secure.port}/db",
        "bad_ipv6": f"postgresql://{PG_USER}:{wrong}@[::1/db",
    }


CASES = ["auth_failed", "auth_failed_query", "refused", "wrong_root", "bad_percent", "bad_ipv6"]


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("case", CASES)
def test_dsn_password_never_printed_when_commands_fail(
    secure: SecureServer, tmp_path: Path, case: str, fmt: str
) -> None:
    """`ingest --once`, `status` and `config` fail or report with a reason, never with the password."""
    env = Env(tmp_path, failing_urls(secure)[case], {"SESSION_DB_LOG_FORMAT": fmt})
    spool_workload(tmp_path, env.spool, limit=2)
    ingest = cli(env, "ingest", "--once")
    assert ingest.returncode in (75, 78), ingest.stderr[
        -3000:
    ]  # unreachable: try later; bad config
    assert ingest.stderr.strip()
    outputs = [ingest.stdout, ingest.stderr]
    if fmt == "json":
        for args in (["status", "--json"], ["config"]):
            done = cli(env, *args)
            outputs += [done.stdout, done.stderr]
    for text in outputs:
        assert WRONG_PASSWORD not in text
        assert quote(WRONG_PASSWORD, safe="") not in text


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def cmdlines(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return "\n".join(out)


@pytest.mark.parametrize("password", [WRONG_PASSWORD, SUPERUSER_PASSWORD])
def test_dsn_password_never_in_run_logs_or_any_cmdline(
    secure: SecureServer, dbname: str, tmp_path: Path, password: str
) -> None:
    """`session-db run` (refused, or connected) keeps the password out of its log, its argv and its children's."""
    env = Env(tmp_path, secure.url(dbname, password=password, sslmode="require"))
    spool_workload(tmp_path, env.spool, limit=3)
    daemon = Daemon(env, tmp_path / "daemon.log")
    try:
        daemon.wait_logged("database_down" if password == WRONG_PASSWORD else "database_up")
        argv = cmdlines(process_tree(daemon.proc.pid))
        assert "daemon run" in argv
        assert password not in argv
        daemon.signal(signal.SIGTERM)
        assert 0 == daemon.proc.wait(30)
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    log = daemon.log.read_text()
    assert "stopped" in log
    assert password not in log
    if password == WRONG_PASSWORD:
        assert "password authentication failed" in log


def test_dsn_psql_gets_the_password_through_the_environment(
    secure: SecureServer, dbname: str, tmp_path: Path
) -> None:
    """`session-db psql` hands psql a URI without the password (argv is world-readable) and PGPASSWORD."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    record = tmp_path / "psql.argv"
    fake = fake_bin / "psql"
    fake.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nprintf "%s" "$PGPASSWORD" > {record}.pw\n'
    )
    fake.chmod(0o755)
    path = f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    for url in (
        secure.url(dbname, sslmode="require"),
        secure.url(dbname, password=None, sslmode="require", query_password=SUPERUSER_PASSWORD),
    ):
        done = cli(Env(tmp_path, url), "psql", "--", "-c", "SELECT 1", PATH=path)
        assert 0 == done.returncode, done.stderr
        argv = record.read_text()
        assert SUPERUSER_PASSWORD not in argv
        assert "sslmode=require" in argv
        assert SUPERUSER_PASSWORD == Path(f"{record}.pw").read_text()
    real = cli(
        Env(tmp_path, secure.url(dbname, sslmode="require")),
        "psql", "--", "-X", "-tA", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )  # fmt: skip
    assert (0, "t") == (real.returncode, real.stdout.strip()), real.stderr


def test_dsn_fixture_server_refuses_a_wrong_password(secure: SecureServer) -> None:
    """The module's server really checks passwords (else the secrecy tests above would prove little)."""
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(secure.url(TEMPLATE, password=WRONG_PASSWORD)).close()
