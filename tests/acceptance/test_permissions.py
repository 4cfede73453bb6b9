"""Permission errors (docs/design/spool.md §7 row 22): an unreadable spool file is retried with
backoff, never hot-looped, lost or quarantined; an unwritable spool stops the daemon with 78.

Root reads mode-000 files anyway, so as root the daemon runs in a user namespace where it is
`nobody` (`unshare --user --map-user=nobody`, as tests/support/pg_ctl does for PostgreSQL):
there the files it created still look like its own, but it has no capability to bypass modes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.acceptance.conftest import Env, assert_oracle, wait_for
from tests.support.spoolwriter import write_event

UNPRIVILEGED = ["unshare", "--user", "--map-user=nobody"] if os.geteuid() == 0 else []
EX_CONFIG = 78
SCANS_OBSERVED_S = 4.0  # with a 1 s scan interval: at least three more scans see the bad file


def _daemon(env: Env, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [*UNPRIVILEGED, sys.executable, "-m", "daemon", *args],
            env=env.vars(),
            stdout=subprocess.DEVNULL,
            stderr=sink,
            cwd=env.root,
        )


def _ingest_once(env: Env, log: Path) -> int:
    return _daemon(env, log, "ingest", "--once").wait(60)


def test_permissions_unreadable_file_retried_not_hot_looped_nor_lost(
    env: Env, tmp_path: Path
) -> None:
    """A mode-000 spool file stays in new/ with one warning over several scans; the readable
    events around it land; once readable it lands too, and the oracle holds."""
    log = tmp_path / "daemon.log"
    assert 0 == _ingest_once(env, log)  # creates the spool as the (namespaced) daemon user
    first = write_event(env.spool, b'{"hook_event_name":"Stop","n":1}', event="Stop")
    locked = write_event(env.spool, b'{"hook_event_name":"Stop","n":2}', event="Stop")
    last = write_event(env.spool, b'{"hook_event_name":"Stop","n":3}', event="Stop")
    os.chmod(env.spool / "new" / locked, 0)

    proc = _daemon(env, log, "run")
    try:
        wait_for(lambda: env.rows() == 2, what="the two readable events")
        time.sleep(SCANS_OBSERVED_S)
        assert proc.poll() is None, log.read_text()
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert 1 == text.count('"spool_file_unreadable"'), text
    assert [locked] == [p.name for p in (env.spool / "new").iterdir()]
    assert not any((env.spool / "quarantine").iterdir())

    os.chmod(env.spool / "new" / locked, 0o600)
    assert 0 == _ingest_once(env, log)
    assert_oracle(env, {first, locked, last})


def test_permissions_unwritable_spool_exits_78_naming_directory_and_fix(
    env: Env, tmp_path: Path
) -> None:
    """A spool whose quarantine/ the daemon cannot write refuses to start (78), naming the
    directory and the chmod that fixes it; the waiting event is untouched."""
    log = tmp_path / "daemon.log"
    assert 0 == _ingest_once(env, log)
    name = write_event(env.spool, b'{"hook_event_name":"Stop"}', event="Stop")
    os.chmod(env.spool / "quarantine", 0o500)
    try:
        assert EX_CONFIG == _ingest_once(env, log)
    finally:
        os.chmod(env.spool / "quarantine", 0o700)
    text = log.read_text()
    assert f"{env.spool / 'quarantine'}: not writable" in text, text
    assert "chmod u+rwx" in text
    assert [name] == [p.name for p in (env.spool / "new").iterdir()]
    assert 0 == env.rows()
