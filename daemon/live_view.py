"""`session-db top`: a live view of running Claude sessions, their subagents and tools, costs,
the active 5-hour block's burn rate and the daemons' throughput and backlog.

On a terminal it redraws in place with rich (alternate screen) and quits on q or Ctrl-C; when
stdout is not a terminal it prints plain lines, one block per refresh (or one with --once).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import psycopg

from daemon import db

REFRESH_INTERVAL_S = 1.0
ACTIVE_WINDOW_S = 900  # a session with no event for this long is not shown
SESSION_ID_CHARS = 8  # session ids are shown shortened
QUIT_KEYS = frozenset("qQ")


@dataclass
class Snapshot:
    taken_at: datetime
    agents: list[dict[str, Any]]
    block: dict[str, Any] | None
    daemons: list[dict[str, Any]]
    events_per_s: float | None = None
    backlog_files: int = 0


@dataclass
class Sampler:
    """Takes snapshots; events per second come from the daemons' heartbeat counters."""

    conn: psycopg.Connection[Any]
    _last: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)

    def take(self) -> Snapshot:
        with self.conn.cursor() as cur:
            cur.execute(db.TOP_AGENTS, {"window_s": ACTIVE_WINDOW_S})
            agents = _dicts(cur)
            cur.execute(db.REPORT_BLOCKS, {"since": None, "until": None, "tz": "UTC", "active": True})
            blocks = _dicts(cur)
            cur.execute(db.STATUS_DAEMONS)
            daemons = [d for d in _dicts(cur) if not d["stale"]]
        self.conn.rollback()  # end the read transaction: the next snapshot sees new rows
        snap = Snapshot(datetime.now(UTC), agents, blocks[0] if blocks else None, daemons)
        snap.backlog_files = sum(int(d["backlog_files"]) for d in daemons)
        snap.events_per_s = self._rate(daemons, time.monotonic())
        return snap

    def _rate(self, daemons: list[dict[str, Any]], now: float) -> float | None:
        rates = []
        seen = {}
        for d in daemons:
            key = (d["host"], int(d["pid"]))
            count = int(d["events_ingested"])
            seen[key] = (now, count)
            if key in self._last and now > self._last[key][0]:
                then, before = self._last[key]
                rates.append(max(0, count - before) / (now - then))
        self._last = seen
        return sum(rates) if rates else None


def _dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _duration(d: timedelta | None) -> str:
    if d is None:
        return ""
    s = max(0, int(d.total_seconds()))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _usd(v: Any) -> str:
    return "-" if v is None else f"{Decimal(v):,.4f}"


def rows(snap: Snapshot) -> list[tuple[str, str, str, str, str, str]]:
    """(session, agent, model, tool now, running for, cost USD) per agent, subagents under their session."""
    out = []
    for a in snap.agents:
        sid = str(a["sdk_session_id"])[:SESSION_ID_CHARS]
        main = a["claude_agent_id"] is None
        agent = "main" if main else f"└ {a['agent_type'] or 'subagent'} {str(a['claude_agent_id'])[:SESSION_ID_CHARS]}"
        tool = a["tool_name"] or ""
        out.append((sid if main else "", agent, a["model"] or "", tool,
                    _duration(a["tool_running_for"]) if tool else "", _usd(a["cost_usd"])))  # fmt: skip
    return out


def summary(snap: Snapshot) -> str:
    eps = "-" if snap.events_per_s is None else f"{snap.events_per_s:.1f}"
    sessions = sum(1 for a in snap.agents if a["claude_agent_id"] is None)
    b = snap.block
    if b is None:
        block = "no active block"
    else:
        tpm = "-" if b["tokens_per_minute"] is None else f"{b['tokens_per_minute']:,.0f} tok/min"
        uph = "-" if b["usd_per_hour"] is None else f"{b['usd_per_hour']:,.2f} USD/h"
        proj = "-" if b["projected_cost_usd"] is None else f"{b['projected_cost_usd']:,.2f}"
        block = (f"block {b['start_at']:%H:%M}-{b['end_at']:%H:%M} UTC: {_usd(b['priced_cost_usd'])} USD, "
                 f"{tpm}, {uph}, projected {proj} USD")  # fmt: skip
    return (f"{snap.taken_at:%Y-%m-%d %H:%M:%S} UTC  sessions {sessions}  events/s {eps}  "
            f"backlog {snap.backlog_files} files  daemons {len(snap.daemons)}  |  {block}")  # fmt: skip


HEADINGS = ("Session", "Agent", "Model", "Tool now", "For", "Cost USD")


def plain_lines(snap: Snapshot) -> list[str]:
    table = [HEADINGS, *rows(snap)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADINGS))]
    lines = [summary(snap)]
    for r in table:
        lines.append("  ".join(c.rjust(w) if i == 5 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())  # fmt: skip
    if not snap.agents:
        lines.append("(no active Claude sessions)")
    return lines


def renderable(snap: Snapshot) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(expand=True, header_style="bold")
    for i, h in enumerate(HEADINGS):
        table.add_column(h, justify="right" if i == 5 else "left", no_wrap=True,
                         overflow="ellipsis")  # fmt: skip
    for r in rows(snap):
        table.add_row(*r)
    footer = Text("q or Ctrl-C quits", style="dim")
    if not snap.agents:
        footer = Text("(no active Claude sessions)   q or Ctrl-C quits", style="dim")
    return Group(Text(summary(snap), style="bold"), table, footer)


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _quit_pressed(fd: int, timeout_s: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return False
    data = os.read(fd, 64).decode(errors="replace")
    return any(ch in QUIT_KEYS for ch in data)


def run(take: Callable[[], Snapshot], out: TextIO, *, once: bool = False,
        interval_s: float = REFRESH_INTERVAL_S) -> int:  # fmt: skip
    """Refresh every interval_s until q, Ctrl-C or (not a terminal) SIGINT/SIGTERM; 0 when quit."""
    with contextlib.suppress(KeyboardInterrupt):
        if once or not out.isatty() or not sys.stdin.isatty():
            _plain(take, out, once, interval_s)
        else:
            _live(take, out, interval_s)
    return 0


def _plain(take: Callable[[], Snapshot], out: TextIO, once: bool, interval_s: float) -> None:
    while True:
        out.write("\n".join(plain_lines(take())) + "\n")
        out.flush()
        if once:
            return
        time.sleep(interval_s)


def _live(take: Callable[[], Snapshot], out: TextIO, interval_s: float) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    fd = sys.stdin.fileno()
    with _cbreak(fd), Live(renderable(take()), console=console, screen=True,
                           auto_refresh=False) as live:  # fmt: skip
        while not _quit_pressed(fd, interval_s):
            live.update(renderable(take()), refresh=True)
