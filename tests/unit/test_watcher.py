"""The file watcher: a name that is not UTF-8 kills watchfiles' thread, never the daemon."""

from __future__ import annotations

import os
import time

import structlog

from daemon.watcher import describe_error
from daemon.worker import Service

WAIT_S = 30.0




def _wait_dead(service: Service) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert service.watcher is not None
        if not service.watcher.alive:
            return
        time.sleep(0.05)
    raise AssertionError("the watcher did not die on a name that is not UTF-8")


def test_watcher_dead_on_undecodable_name_is_logged_and_restarted_after_backoff(
    offline_service: Service,
) -> None:
    """A file named with bytes that are not UTF-8 in new/ makes watchfiles raise ("Unable to
    decode path"); the service logs `watcher_failed` (name escaped), does not raise, keeps
    the dead watcher down until the restart delay passes, then starts a new one."""
    service = offline_service
    service.spool.ensure()
    service.ensure_watcher()
    first = service.watcher
    assert first is not None
    try:
        with open(os.fsencode(service.spool.new) + b"/bad-\xff.json", "wb") as fh:
            fh.write(b"{}")
        _wait_dead(service)
        with structlog.testing.capture_logs() as logs:
            service.ensure_watcher()  # must not raise
            service.ensure_watcher()  # within the delay: still down, logged once
        failed = [e for e in logs if e["event"] == "watcher_failed"]
        assert 1 == len(failed)
        assert "\\udcff" not in failed[0]["error"]
        assert failed[0]["fallback"] == "periodic scan"
        assert service.watcher is first
        service.watching.retry_at = 0.0  # the restart delay has passed
        with structlog.testing.capture_logs() as logs:
            service.ensure_watcher()
        assert service.watcher is not first
        assert service.watcher is not None
        assert service.watcher.alive
        assert ["watching"] == [e["event"] for e in logs]
    finally:
        if service.watcher is not None:
            service.watcher.stop()


def test_describe_error_escapes_bytes_that_are_not_utf8() -> None:
    """A log line never carries a lone surrogate (JSON renderers refuse them)."""
    text = describe_error(RuntimeError(os.fsdecode(b"Unable to decode path /x/\xff")))
    text.encode("utf-8")
    assert "RuntimeError" in text
