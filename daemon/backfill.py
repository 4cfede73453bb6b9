"""`session-db backfill`: import transcripts that already exist (this machine's Claude config
folders, or an archive such as ~/old-laptop/.claude/projects), idempotently.

Files continue from the byte offsets stored in transcript_files and responses are deduplicated
by key, so running it again, or next to a daemon, inserts nothing twice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from daemon import config, db, wiring
from daemon.database import migrated_sink
from daemon.errors import ConfigError
from daemon.transcripts import ReadStats

PROGRESS_TTY_INTERVAL_S = 0.1  # redraw the bar at most this often on a terminal
PROGRESS_LINE_INTERVAL_S = 5.0  # one progress line this often when stderr is a file or pipe
PROGRESS_BAR_WIDTH = 30  # characters


def default_projects_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Each Claude config dir's projects/ folder that exists: $CLAUDE_CONFIG_DIR (a comma
    list), ~/.claude, ~/.config/claude."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    bases = [Path(p).expanduser() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",") if p.strip()]
    bases += [home / ".claude", home / ".config" / "claude"]
    seen: list[Path] = []
    for base in bases:
        projects = base / "projects"
        if projects.is_dir() and projects not in seen:
            seen.append(projects)
    return seen


def discover(dirs: Sequence[Path]) -> list[Path]:
    """Every *.jsonl file below `dirs`, by its real path (as transcript_files keys it).

    rglob does not enter symlinked folders, so below a resolved folder only the file itself can
    be a link (cheaper than resolving each path)."""
    return sorted(
        {
            p.resolve() if p.is_symlink() else p
            for d in dirs
            for p in d.resolve().rglob("*.jsonl")
            if p.is_file()
        }
    )


class Progress:
    """A progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, total_files: int, total_bytes: int, stream: TextIO | None = None) -> None:
        self.total_files = total_files
        self.total_bytes = max(total_bytes, 1)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, stats: ReadStats) -> None:
        now = time.monotonic()
        interval = PROGRESS_TTY_INTERVAL_S if self.tty else PROGRESS_LINE_INTERVAL_S
        if now - self._last < interval:
            return
        self._last = now
        self._draw(stats, now)

    def _draw(self, stats: ReadStats, now: float) -> None:
        frac = min(1.0, stats.bytes / self.total_bytes)
        mb = stats.bytes / 1e6
        rate = mb / max(now - self.started, 1e-6)
        text = (
            f"{frac * 100:5.1f}% {stats.files}/{self.total_files} files "
            f"{mb:.1f}/{self.total_bytes / 1e6:.1f} MB {rate:.1f} MB/s {stats.responses} responses"
        )
        if self.tty:
            bar = "#" * int(frac * PROGRESS_BAR_WIDTH)
            self.stream.write(f"\r[{bar:<{PROGRESS_BAR_WIDTH}}] {text}")
        else:
            self.stream.write(f"backfill: {text}\n")
        self.stream.flush()

    def finish(self, stats: ReadStats) -> None:
        self._draw(stats, time.monotonic())
        if self.tty:
            self.stream.write("\n")


@dataclass(frozen=True)
class Summary:
    """What one backfill did."""

    dirs: list[Path]
    files: int
    new_files: int
    stats: ReadStats
    seconds: float
    unpriced: list[tuple[str, int]]
    archive: str

    def render(self) -> str:
        s = self.stats
        mb = s.bytes / 1e6
        lines = [
            f"backfill: {self.files} files ({self.new_files} new to session-db) in "
            f"{', '.join(map(str, self.dirs))}",
            f"  read {mb:.1f} MB, {s.lines} lines ({s.bad_lines} unreadable) in "
            f"{self.seconds:.1f} s ({mb / max(self.seconds, 1e-6):.1f} MB/s)",
            f"  responses: {s.responses} seen, {s.inserted} new, {s.updated} merged; "
            f"{s.resets} files re-read from the start, {s.missing} gone",
            f"  messages (archive = {self.archive}): {s.messages} read, {s.archived} new",
        ]
        lines += [
            f"  warning: {count} responses of model {model!r} have no price: "
            f"session-db prices set {model} …"
            for model, count in self.unpriced
        ]
        return "\n".join(lines) + "\n"


def run(settings: config.Settings, dirs: Sequence[Path]) -> Summary | None:
    """Read every transcript below `dirs` (default: this machine's projects/ folders); None
    when there is nothing to read."""
    folders = [d.expanduser().resolve() for d in dirs] or default_projects_dirs()
    missing = [d for d in folders if not d.is_dir()]
    if missing:
        raise ConfigError(f"backfill: not a directory: {', '.join(map(str, missing))}")
    if not folders:
        return None
    files = discover(folders)
    total_bytes = sum(p.stat().st_size for p in files)
    t0 = time.monotonic()
    with migrated_sink(settings) as sink:
        # The folders named on the command line are read too.
        reader = wiring.transcript_reader(settings, sink, also_under=folders)
        new = reader.register(files)
        bar = Progress(len(files), total_bytes)
        stats = reader.sync(only={str(p) for p in files}, progress=bar.update)
        bar.finish(stats)
        unpriced = [
            (str(m), int(n)) for m, n in sink.connection().execute(db.SELECT_UNPRICED_MODELS)
        ]
    return Summary(
        folders, len(files), new, stats, time.monotonic() - t0, unpriced, settings.archive
    )
