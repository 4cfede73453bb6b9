"""The real hook and the real daemon as subprocesses, driven with signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO

HOOK = REPO / "hooks" / "session-db-hook"
WAIT_S = 30.0


def wait_for(
    predicate: Callable[[], object], timeout: float = WAIT_S, what: str = "condition"
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Env:
    """Paths and environment of one daemon installation under tmp_path."""

    root: Path
    db_url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def vars(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_DB_", "CLAUDE_"))}
        env.update(
            SESSION_DB_URL=self.db_url,
            SESSION_DB_SPOOL=str(self.spool),
            SESSION_DB_STATE_DIR=str(self.state),
            SESSION_DB_LOG_FORMAT="json",
            SESSION_DB_SCAN_INTERVAL_S="1",
            XDG_CONFIG_HOME=str(self.root / "config"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra)
        return env

    def rows(
        self, sql: str = "SELECT count(*) FROM agent_logs WHERE event_category = 'hook'"
    ) -> int:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


class Daemon:
    """`session-db run` as a child process with its log in a file."""

    def __init__(self, env: Env, log: Path, **extra: str) -> None:
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run"],
                env={**env.vars(), **extra},
                stdout=subprocess.DEVNULL,
                stderr=sink,
                cwd=env.root,
            )

    def events(self) -> list[dict[str, object]]:
        out = []
        for raw in self.log.read_text(errors="replace").splitlines():
            line = raw[raw.find("{") :] if "{" in raw else raw
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_logged(self, event: str, timeout: float = WAIT_S) -> None:
        wait_for(
            lambda: any(e.get("event") == event for e in self.events()),
            timeout,
            f"log event {event}",
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = WAIT_S) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(WAIT_S)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> Env:
    return Env(tmp_path, db_url)


@pytest.fixture
def start_daemon(env: Env, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(**extra: str) -> Daemon:
        d = Daemon(env, tmp_path / f"daemon-{len(started)}.log", **extra)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.kill()


CLI_TIMEOUT_S = (
    300.0  # a one-shot command; generous because a loaded machine starts PostgreSQL slowly
)


def cli(
    env: Env, *args: str, timeout: float = CLI_TIMEOUT_S, cwd: Path | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`session-db ARGS` as a subprocess with env's settings (plus `extra` variables); text
    output captured, never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env={**env.vars(), **extra},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def run_hook(
    env: Env, payload: bytes, event: str | None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    args = [str(HOOK), "--spool", str(env.spool)] + ([event] if event else [])
    return subprocess.run(
        args,
        input=payload,
        capture_output=True,
        env={**env.vars(), **(extra_env or {})},
        check=False,
        timeout=30,
    )


def assert_oracle(env: Env, accepted: set[str]) -> None:
    """docs/design/spool.md §5: rows ∪ quarantine == accepted, disjoint, no duplicates, new/ drained."""
    with psycopg.connect(env.db_url) as conn:
        rows = [
            r[0]
            for r in conn.execute("SELECT event_uid FROM agent_logs WHERE event_category = 'hook'")
        ]
    quarantined = (
        {
            p.name
            for p in (env.spool / "quarantine").iterdir()
            if not p.name.endswith(".reason.json")
        }
        if (env.spool / "quarantine").exists()
        else set()
    )
    assert len(rows) == len(set(rows)), "duplicate rows"
    assert accepted == set(rows) | quarantined, "lost or unknown events"
    assert set() == set(rows) & quarantined, "an event is both a row and quarantined"
    assert [] == sorted(p.name for p in (env.spool / "new").iterdir()), "new/ not drained"


class HookLoop(threading.Thread):
    """The real hook in a loop, one event every `interval_s`; remembers the marker of every
    event it accepted (exit 0, nothing on stderr) and of every one it did not."""

    def __init__(self, env: Env, prefix: str, interval_s: float) -> None:
        super().__init__(name="hooks", daemon=True)
        self.env = env
        self.prefix = prefix
        self.interval_s = interval_s
        self.accepted: list[str] = []
        self.failed: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._done.is_set():
            marker = f"{self.prefix}{n:06d}"
            payload = f'{{"hook_event_name":"PostToolUse","marker":"{marker}"}}'.encode()
            done = run_hook(self.env, payload, "PostToolUse")
            (self.accepted if done.returncode == 0 and not done.stderr else self.failed).append(
                marker
            )
            n += 1
            self._done.wait(self.interval_s)

    def stop(self) -> None:
        self._done.set()
        if self.ident is not None:
            self.join(30)

