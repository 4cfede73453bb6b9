"""daemon.spool: the Maildir-style directory, on real files under tmp_path."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from daemon.errors import ConfigError, RefusedInputError
from daemon.spool import REASON_SUFFIX, Backlog, Spool, SpoolEntry
from tests.support.spoolwriter import spool_name, write_event, write_raw

HOUR = 3600.0


def set_age(path: Path, age_s: float) -> None:
    """Make the file's mtime `age_s` seconds old."""
    t = time.time() - age_s
    os.utime(path, (t, t))


def read_sidecar(spool: Spool, name: str) -> dict[str, object]:
    data = json.loads((spool.quarantine / (name + REASON_SUFFIX)).read_bytes())
    assert isinstance(data, dict)
    return data


# --- ensure ---------------------------------------------------------------------------------


def test_spool_ensure_creates_private_dirs(tmp_path: Path) -> None:
    """ensure() creates root, tmp/, new/ and quarantine/ with mode 0700."""
    s = Spool(tmp_path / "a" / "spool")
    s.ensure()
    for d in (s.root, s.tmp, s.new, s.quarantine):
        assert 0o700 == stat.S_IMODE(d.stat().st_mode), d


def test_spool_ensure_is_idempotent(spool: Spool) -> None:
    """A second ensure() on an existing spool succeeds and keeps the files."""
    name = write_event(spool.root, b"{}", event="Stop")
    spool.ensure()
    assert [name] == [e.name for e in spool.scan()]


def test_spool_ensure_unusable_root_is_config_error(tmp_path: Path) -> None:
    """A spool root that cannot be created (a file is in the way) is a ConfigError."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot create"):
        Spool(blocker / "spool").ensure()


# --- scan -----------------------------------------------------------------------------------


def test_spool_scan_sorts_by_name_and_skips_dot_files(spool: Spool) -> None:
    """scan() lists new/ only, without dot-files, sorted by name (names start with the time)."""
    names = [spool_name("h", ns) for ns in (3_000, 1_000, 2_000)]
    for n in names:
        write_raw(spool.root, b"{}", name=n)
    write_raw(spool.root, b"{}", name=".hidden")
    write_raw(spool.root, b"{}", name=".tmp-in-progress")
    (spool.tmp / spool_name("h", 500)).write_bytes(b"{}")
    assert sorted(names) == [e.name for e in spool.scan()]


def test_spool_scan_reports_size_and_mtime(spool: Spool) -> None:
    """Each entry carries the file's size and mtime in ns."""
    name = write_raw(spool.root, b"0123456789")
    t = 1_700_000_000
    os.utime(spool.new / name, (t, t))
    mode = os.lstat(spool.new / name).st_mode
    assert [SpoolEntry(name, 10, t * 10**9, mode)] == spool.scan()
    assert stat.S_ISREG(mode)


def test_spool_scan_missing_new_dir_is_empty(tmp_path: Path) -> None:
    """Scanning a spool whose new/ does not exist yet returns nothing."""
    assert [] == Spool(tmp_path / "absent").scan()


def test_spool_scan_does_not_follow_symlinks(spool: Spool, tmp_path: Path) -> None:
    """A symlink in new/ is listed with its own lstat size, not its target's."""
    target = tmp_path / "target"
    target.write_bytes(b"x" * 5000)
    (spool.new / "link").symlink_to(target)
    [entry] = spool.scan()
    assert "link" == entry.name
    assert (spool.new / "link").lstat().st_size == entry.size


# --- read -----------------------------------------------------------------------------------


def test_spool_read_returns_exact_bytes(spool: Spool) -> None:
    """read() returns the file's bytes unchanged, however large."""
    data = os.urandom(3 * (1 << 20) + 17)
    name = write_raw(spool.root, data)
    assert data == spool.read(name)


def test_spool_read_refuses_symlink(spool: Spool, tmp_path: Path) -> None:
    """read() never follows a symlink: OSError with errno ELOOP."""
    target = tmp_path / "secret"
    target.write_bytes(b'{"not": "yours"}')
    (spool.new / "planted").symlink_to(target)
    with pytest.raises(OSError, match=re.escape(os.strerror(errno.ELOOP))) as excinfo:
        spool.read("planted")
    assert errno.ELOOP == excinfo.value.errno


def test_spool_read_missing_file_raises_file_not_found(spool: Spool) -> None:
    """read() of a file settled meanwhile raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        spool.read("gone")


# --- remove ---------------------------------------------------------------------------------


def test_spool_remove_tolerates_missing_files(spool: Spool) -> None:
    """remove() unlinks what exists, ignores what is gone, and counts only its own removals."""
    a = write_event(spool.root, b"{}", event="Stop")
    b = write_event(spool.root, b"{}", event="Stop")
    assert 2 == spool.remove([a, "never-existed", b])
    assert [] == spool.scan()
    assert 0 == spool.remove([a, b])


# --- quarantine -------------------------------------------------------------------------------


def test_spool_quarantine_moves_file_with_reason_sidecar(spool: Spool) -> None:
    """quarantine_file moves the bytes unchanged beside a JSON sidecar with reason and detail."""
    data = b'session-db-spool: 1\nreceived-ns: 5\n\n{"a": '
    name = write_raw(spool.root, data)
    assert spool.quarantine_file(name, "json_decode", "unexpected end", sqlstate="22P05")
    assert not (spool.new / name).exists()
    assert data == (spool.quarantine / name).read_bytes()
    sidecar = read_sidecar(spool, name)
    assert (name, "json_decode", "unexpected end", "22P05") == (
        sidecar["name"],
        sidecar["reason"],
        sidecar["detail"],
        sidecar["sqlstate"],
    )
    assert isinstance(sidecar["quarantined_at"], float)
    assert [name] == list(spool.quarantined())
    assert [] == spool.scan()


def test_spool_quarantine_leaves_no_temp_files(spool: Spool) -> None:
    """After quarantine only the file and its sidecar are in quarantine/."""
    name = write_raw(spool.root, b"x")
    spool.quarantine_file(name, "not_an_object", "top-level JSON is int")
    assert sorted([name, name + REASON_SUFFIX]) == sorted(
        p.name for p in spool.quarantine.iterdir()
    )


def test_spool_quarantine_missing_file_returns_false(spool: Spool) -> None:
    """quarantine_file returns False for a file already gone and writes no sidecar."""
    assert not spool.quarantine_file("gone", "json_decode", "x")
    assert [] == list(spool.quarantine.iterdir())


def test_spool_quarantine_moves_symlink_itself(spool: Spool, tmp_path: Path) -> None:
    """A planted symlink is quarantined as a link; its target is left untouched."""
    target = tmp_path / "target"
    target.write_bytes(b"keep")
    (spool.new / "planted").symlink_to(target)
    assert spool.quarantine_file("planted", "symlink", "spool files are never followed")
    assert (spool.quarantine / "planted").is_symlink()
    assert b"keep" == target.read_bytes()


def test_spool_quarantined_lists_events_not_sidecars(spool: Spool) -> None:
    """quarantined() yields event names sorted, never sidecars or dot-files."""
    names = sorted(write_raw(spool.root, b"x", name=spool_name("h", ns)) for ns in (2, 1))
    for n in names:
        spool.quarantine_file(n, "r", "d")
    (spool.quarantine / ".partial").write_bytes(b"")
    assert names == list(spool.quarantined())


# --- orphans ----------------------------------------------------------------------------------


def test_spool_orphans_honour_ttl(spool: Spool) -> None:
    """Only tmp/ files older than the TTL are orphans."""
    old = spool.tmp / spool_name("h", 1)
    young = spool.tmp / spool_name("h", 2)
    future = spool.tmp / spool_name("h", 3)
    for p in (old, young, future):
        p.write_bytes(b"partial")
    set_age(old, 25 * HOUR)
    set_age(young, 23 * HOUR)
    set_age(future, -HOUR)  # clock skew: mtime in the future
    assert [old.name] == spool.orphans(24 * HOUR)
    assert sorted([old.name, young.name]) == sorted(spool.orphans(22 * HOUR))


def test_spool_orphans_ignores_new_dir(spool: Spool) -> None:
    """Old files in new/ are backlog, never orphans."""
    name = write_event(spool.root, b"{}", event="Stop")
    set_age(spool.new / name, 100 * HOUR)
    assert [] == spool.orphans(HOUR)


def test_spool_settle_orphan_removes_copy_already_in_new(spool: Spool) -> None:
    """A tmp/ copy of an event already in new/ (interrupted link+unlink) is deleted."""
    name = write_event(spool.root, b'{"a": 1}', event="Stop")
    (spool.tmp / name).write_bytes((spool.new / name).read_bytes())
    assert "removed" == spool.settle_orphan(name)
    assert not (spool.tmp / name).exists()
    assert [name] == [e.name for e in spool.scan()]
    assert [] == list(spool.quarantine.iterdir())


def test_spool_settle_orphan_removes_copy_already_quarantined(spool: Spool) -> None:
    """A tmp/ copy of an event that was already quarantined is deleted."""
    name = write_raw(spool.root, b"bad")
    spool.quarantine_file(name, "json_decode", "x")
    (spool.tmp / name).write_bytes(b"bad")
    assert "removed" == spool.settle_orphan(name)
    assert not (spool.tmp / name).exists()


def test_spool_settle_orphan_quarantines_unfinished_write(spool: Spool) -> None:
    """An orphan with no copy in new/ is quarantined with reason orphan_tmp, bytes intact."""
    name = spool_name("h", 7)
    (spool.tmp / name).write_bytes(b"session-db-spool: 1\nreceived-ns: 7\n")
    assert "quarantined" == spool.settle_orphan(name)
    assert not (spool.tmp / name).exists()
    assert b"session-db-spool: 1\nreceived-ns: 7\n" == (spool.quarantine / name).read_bytes()
    sidecar = read_sidecar(spool, name)
    assert ("orphan_tmp", name) == (sidecar["reason"], sidecar["name"])
    assert isinstance(sidecar["detail"], str)


def test_spool_settle_orphan_gone_leaves_nothing_behind(spool: Spool) -> None:
    """An orphan that vanished before settling reports "gone" and leaves no reason-less sidecar."""
    name = spool_name("h", 8)
    assert "gone" == spool.settle_orphan(name)
    assert [] == list(spool.quarantine.iterdir())


def test_spool_orphans_then_settle_drains_tmp(spool: Spool) -> None:
    """Settling every orphan leaves tmp/ with only files younger than the TTL."""
    young = spool.tmp / spool_name("h", 99)
    young.write_bytes(b"being written")
    in_new = write_event(spool.root, b"{}", event="Stop")
    (spool.tmp / in_new).write_bytes(b"dup")
    lost = spool.tmp / spool_name("h", 1)
    lost.write_bytes(b"partial")
    for p in (spool.tmp / in_new, lost):
        set_age(p, 2 * HOUR)
    results = {n: spool.settle_orphan(n) for n in spool.orphans(HOUR)}
    assert {in_new: "removed", lost.name: "quarantined"} == results
    assert [young.name] == [p.name for p in spool.tmp.iterdir()]


# --- backlog ----------------------------------------------------------------------------------


def test_spool_backlog_empty(spool: Spool) -> None:
    """An empty new/ has no backlog and no oldest age."""
    assert Backlog(0, 0, None) == spool.backlog()


def test_spool_backlog_counts_files_bytes_and_oldest_age(spool: Spool) -> None:
    """backlog() counts files and bytes in new/ and the age of the oldest mtime."""
    a = write_raw(spool.root, b"x" * 100)
    b = write_raw(spool.root, b"y" * 50)
    write_raw(spool.root, b"z" * 1000, name=".ignored")
    (spool.tmp / "t").write_bytes(b"w" * 7)
    set_age(spool.new / a, 120)
    set_age(spool.new / b, 10)
    backlog = spool.backlog()
    assert (2, 150) == (backlog.files, backlog.bytes)
    assert backlog.oldest_age_s is not None
    assert 119 <= backlog.oldest_age_s < 130


def test_spool_backlog_future_mtime_is_zero_age(spool: Spool) -> None:
    """A file stamped in the future (clock skew) has age 0, never negative."""
    name = write_raw(spool.root, b"x")
    set_age(spool.new / name, -HOUR)
    assert Backlog(1, 1, 0.0) == spool.backlog()


def test_spool_read_refuses_a_device_without_reading(spool: Spool) -> None:
    """A character device (here /dev/zero, which never ends) is refused by fstat, not read."""
    with pytest.raises(RefusedInputError) as caught:
        spool.read("/dev/zero", 0, limit=1 << 20)
    assert "not_a_regular_file" == caught.value.reason


def test_spool_read_bounds_a_growing_file_by_the_limit(spool: Spool) -> None:
    """A file longer than the limit (grown after its scan) is refused `too_large` at the limit."""
    (spool.new / "big").write_bytes(b"x" * 5000)
    with pytest.raises(RefusedInputError) as caught:
        spool.read("big", 10, limit=4096)
    assert "too_large" == caught.value.reason


def test_spool_keep_original_of_a_vanished_file_is_settled(spool: Spool) -> None:
    """keep_original of a file another daemon already settled (unlinked) returns False, no error."""
    assert False is spool.keep_original("gone-meanwhile")
