"""The file watcher: a watchfiles thread that only wakes the main loop.

inotify drops events on overflow, so a wake-up only triggers an authoritative scan. The
watcher can die (watchfiles raises "Unable to decode path" for a name that is not UTF-8,
inotify limits, a vanished directory); that never stops ingestion: the main loop logs
`watcher_failed`, keeps scanning on its timer, and restarts the watcher after a backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
import watchfiles

from daemon.backoff import Backoff
from daemon.config import WATCH_STEP_MS
from daemon.fs_names import printable

log = structlog.get_logger("session_db.service")  # the daemon's component name in log lines

WATCHER_RUST_TIMEOUT_MS = 5000  # the watcher thread checks its stop flag at least this often
WATCHER_RESTART_BASE_S = 1.0  # first restart delay after the watcher died; doubles, jittered
WATCHER_RESTART_CAP_S = 60.0  # … up to this


def describe_error(exc: BaseException) -> str:
    """An exception as a log-safe string (names that are not UTF-8 escaped, not surrogates)."""
    text = f"{type(exc).__name__}: {exc}"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Watcher:
    """A watchfiles thread over a fixed set of paths; replaced when the set changes."""

    def __init__(
        self,
        paths: list[Path],
        wake: Callable[[bool], None],
        *,
        debounce_ms: int,
        force_polling: bool,
    ) -> None:
        self.paths = paths
        self._wake = wake
        self._debounce_ms = debounce_ms
        self._force_polling = force_polling
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._spool_prefix = str(paths[0])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=(WATCHER_RUST_TIMEOUT_MS / 1000) + 2)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            for changes in watchfiles.watch(
                *self.paths,
                watch_filter=None,
                debounce=self._debounce_ms,
                step=WATCH_STEP_MS,
                stop_event=self._stop,
                rust_timeout=WATCHER_RUST_TIMEOUT_MS,
                yield_on_timeout=True,
                force_polling=self._force_polling,
                raise_interrupt=False,
            ):
                if changes:
                    state_changed = any(not p.startswith(self._spool_prefix) for _, p in changes)
                    self._wake(state_changed)
        except BaseException as exc:  # noqa: BLE001 - recorded; the main loop logs it and restarts us
            self.error = exc
            self._wake(True)




class WatcherSupervisor:
    """Keeps one watcher over the current paths: replaced when they change, restarted after a
    backoff when it died. A dead watcher never stops ingestion: it is logged (`watcher_failed`),
    the loop's scheduler keeps scanning every scan interval, and a new watcher starts later."""

    def __init__(
        self, wake: Callable[[bool], None], *, debounce_ms: int, force_polling: bool
    ) -> None:
        self.wake = wake
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.watcher: Watcher | None = None
        self.backoff = Backoff(WATCHER_RESTART_BASE_S, WATCHER_RESTART_CAP_S)
        self.retry_at = 0.0  # monotonic time before which a dead watcher stays down

    def ensure(self, paths: list[Path]) -> None:
        """A live watcher over `paths` from now on, unless a dead one's restart delay runs."""
        watcher = self.watcher
        if watcher is not None and watcher.alive and watcher.paths == paths:
            return
        if watcher is not None and not watcher.alive:
            if watcher.error is not None:
                delay = self.backoff.next_delay() + WATCHER_RESTART_BASE_S
                self.retry_at = time.monotonic() + delay
                log.error(
                    "watcher_failed",
                    error=describe_error(watcher.error),
                    restart_in_s=round(delay, 1),
                    fallback="periodic scan",
                )
                watcher.error = None
            if time.monotonic() < self.retry_at:
                return
        if watcher is not None:
            watcher.stop()
        self.watcher = Watcher(
            paths, self.wake, debounce_ms=self.debounce_ms, force_polling=self.force_polling
        )
        self.watcher.start()
        log.info("watching", paths=[printable(p) for p in paths])

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
