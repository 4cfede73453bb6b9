"""Stop signals and the loop's wake-up pipe.

A signal handler runs between two bytecodes of the main thread, possibly while that thread
holds a non-reentrant lock (structlog's PrintLogger, an Event's condition). So the handler
only records the signal and writes one byte to a pipe; the loop notices, logs and stops.

`StopSignals` is a context manager (as procrastinate's): it installs the handlers on entry
and restores the previous ones on exit. A stop that arrives before the loop starts (during
start-up) is kept: the flag is set and the pipe holds a byte, so the loop never waits.
The first SIGTERM/SIGINT stops gracefully; a second one gets the default action (dies at once).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAIN_BYTES = 4096  # bytes read per os.read when emptying the wake pipe


class Waker:
    """A self-pipe: `wake()` is safe from any thread and from a signal handler (one write)."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        if self._write_fd < 0:
            return  # closed: a late watcher thread must not write into a reused descriptor
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway
        except OSError:
            pass  # closed at shutdown while a watcher thread still wakes us

    def wait(self, timeout_s: float) -> bool:
        """Block until woken or `timeout_s` passes; True when woken. Consumes pending wakes."""
        ready, _, _ = select.select([self._read_fd], [], [], max(0.0, timeout_s))
        if not ready:
            return False
        self.clear()
        return True

    def clear(self) -> None:
        try:
            while os.read(self._read_fd, DRAIN_BYTES):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        fds, (self._read_fd, self._write_fd) = (self._read_fd, self._write_fd), (-1, -1)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class StopSignals:
    """`with StopSignals(waker) as stop:` — SIGTERM/SIGINT set `stop.received` and wake."""

    def __init__(self, waker: Waker, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self._waker = waker
        self._signals = signals
        self._previous: dict[
            signal.Signals, Callable[[int, FrameType | None], Any] | int | None
        ] = {}
        self.received: signal.Signals | None = None

    def __enter__(self) -> StopSignals:
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        # No logging, no locks: record, arm the default action for a second signal, wake.
        self.received = signal.Signals(signum)
        for sig in self._signals:
            signal.signal(sig, signal.SIG_DFL)
        self._waker.wake()
