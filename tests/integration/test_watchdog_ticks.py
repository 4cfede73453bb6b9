"""The daemon's watchdog is fed between the files of a batch, not only between batches."""

from __future__ import annotations

from pathlib import Path

from daemon.ingest import Ingestor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from tests.integration.conftest import HOST
from tests.support.spoolwriter import write_event

FILES = 40  # one batch (batch_max_files is larger)


class RecordingSpool(Spool):
    """A real spool that notes each file read in a shared trail."""

    def __init__(self, root: Path, trail: list[str]) -> None:
        super().__init__(root)
        self.trail = trail

    def read(self, name: str, size_hint: int = 0, limit: int = 2**62) -> bytes:
        self.trail.append("read")
        return super().read(name, size_hint, limit)


def test_ingestor_drain_ticks_before_every_file_of_a_batch(
    tmp_path: Path, sink: PostgresSink
) -> None:
    """`should_stop` (the daemon's watchdog feeder) runs before each file of a batch is read,
    so one batch of slow files (large payloads, long redaction) cannot starve the watchdog."""
    trail: list[str] = []
    spool = RecordingSpool(tmp_path / "spool", trail)
    spool.ensure()
    for i in range(FILES):
        write_event(spool.root, f'{{"hook_event_name":"Stop","n":{i}}}'.encode(), event="Stop")
    ingestor = Ingestor(
        spool, sink, host=HOST, batch_max_files=500, batch_max_bytes=8 << 20, foreign_grace_s=0.0
    )

    def tick() -> bool:
        trail.append("tick")
        return False

    stats = ingestor.drain(tick)
    assert (1, FILES, FILES) == (stats.batches, stats.files, stats.inserted)
    reads = [i for i, step in enumerate(trail) if step == "read"]
    assert FILES == len(reads)
    assert all(trail[i - 1] == "tick" for i in reads), trail
