"""The hook on a full disk (a 64 KiB tmpfs in a private mount namespace): exit 0 fast, one stderr
line, nothing on stdout, nothing partial in new/."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.acceptance.conftest import HOOK
from tests.conftest import FIXTURES

SCRIPT = """
set -e
mount -t tmpfs -o size=64k tmpfs {mnt}
mkdir -p {mnt}/spool/tmp {mnt}/spool/new
head -c 60000 /dev/zero > {mnt}/filler || true
set +e
{hook} --spool {mnt}/spool PostToolUse < {payload} > {mnt}/../stdout 2> {mnt}/../stderr
echo $? > {mnt}/../rc
ls -A {mnt}/spool/new > {mnt}/../new_listing
ls -A {mnt}/spool/tmp > {mnt}/../tmp_listing
"""


def test_hook_disk_full_exits_zero_and_leaves_nothing_partial(tmp_path: Path) -> None:
    """ENOSPC while writing: exit 0, stdout empty, exactly one stderr line, new/ and tmp/ empty."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    payload = tmp_path / "payload.json"
    payload.write_bytes(
        (FIXTURES / "hooks" / "PostToolUse.json").read_bytes() * 20
    )  # ~13 KB > free space
    script = SCRIPT.format(
        mnt=shlex.quote(str(mnt)), hook=shlex.quote(str(HOOK)), payload=shlex.quote(str(payload))
    )
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    stderr = (tmp_path / "stderr").read_text()
    assert ("0", "", 1) == (
        (tmp_path / "rc").read_text().strip(),
        (tmp_path / "stdout").read_text(),
        stderr.count("\n"),
    )
    assert stderr.startswith("session-db-hook: ")
    assert ("", "") == (
        (tmp_path / "new_listing").read_text(),
        (tmp_path / "tmp_listing").read_text(),
    )
