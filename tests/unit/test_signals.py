"""daemon.signals: the stop handler only flags and wakes; handlers are restored on exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from daemon.signals import StopSignals, Waker
from tests.conftest import REPO

HANG_GUARD_S = 60  # a deadlocked child is killed after this (the test then fails)


def test_stop_signals_stop_before_loop_is_kept_and_wakes_the_first_wait() -> None:
    """A SIGTERM that arrives before the loop's first wait sets the flag and leaves a wake-up
    pending, so the first wait returns at once instead of sleeping through it."""
    waker = Waker()
    try:
        with StopSignals(waker) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested
            assert signal.SIGTERM == stop.received
            assert waker.wait(HANG_GUARD_S)  # woken, not timed out
    finally:
        waker.close()


def test_stop_signals_restore_previous_handlers_on_exit() -> None:
    """Leaving the context puts back whatever handlers were installed before it, also after a
    signal (which arms SIG_DFL for a second one)."""

    def mine(_signum: int, _frame: object) -> None:
        return None

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGINT)}
    waker = Waker()
    try:
        with StopSignals(waker):
            assert signal.getsignal(signal.SIGTERM) is not mine
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.SIG_DFL == signal.getsignal(signal.SIGTERM)
        assert mine is signal.getsignal(signal.SIGTERM)
        assert mine is signal.getsignal(signal.SIGINT)
    finally:
        waker.close()
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_waker_wait_times_out_without_a_wake_and_consumes_wakes() -> None:
    """wait() is False when nothing woke it; many wakes are consumed by one wait."""
    waker = Waker()
    try:
        assert not waker.wait(0)
        for _ in range(10_000):  # more than a pipe buffer: wake() never blocks
            waker.wake()
        assert waker.wait(0)
        assert not waker.wait(0)
    finally:
        waker.close()


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from daemon import config, log as logsetup
    from daemon.worker import Service

    class KillingStream:
        # Delivers SIGTERM to ourselves while structlog's PrintLogger holds its write lock
        # (it writes under the lock): the handler then runs inside the locked region.
        fired = False
        def write(self, text):
            sys.stderr.write(text)
            if not KillingStream.fired and '"watching"' in text:
                KillingStream.fired = True
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # bytecodes: the handler runs here, lock held
                    pass
            return len(text)
        def flush(self):
            sys.stderr.flush()
        def isatty(self):
            return False

    logsetup.configure("json", stream=KillingStream())
    settings = config.load(dict(os.environ))
    sys.exit(Service(settings).run())
    """
)


def test_service_signal_during_a_log_write_stops_cleanly_without_deadlock(tmp_path: Path) -> None:
    """A SIGTERM delivered while the main thread holds the logger's (non-reentrant) lock does
    not deadlock: the handler logs nothing, the loop logs `stop_requested` and exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_DB_")}
    env.update(
        SESSION_DB_URL="postgresql://nobody@127.0.0.1:1/none",  # nothing listens on port 1
        SESSION_DB_SPOOL=str(tmp_path / "spool"),
        SESSION_DB_STATE_DIR=str(tmp_path / "state"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PYTHONPATH=str(REPO),
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
        cwd=tmp_path,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    assert '"stop_requested"' in done.stderr
    assert '"signal": "SIGTERM"' in done.stderr or '"signal":"SIGTERM"' in done.stderr
