"""daemon.event_rows: the COPY text of a batch, whole or in pieces."""

from __future__ import annotations

import uuid

from daemon.event_rows import AgentIds, AgentKey, copy_chunks, copy_text
from daemon.events import parse
from tests.support.spoolwriter import encode


def test_event_rows_copy_chunks_are_whole_lines_that_join_to_the_text() -> None:
    """Pieces end at line ends, are about chunk_bytes long (a longer line travels alone), and
    joined give exactly copy_text: one line per event, 20 fields each."""
    events = [
        parse(
            f"{i}.x.h",
            encode(b'{"session_id": "s", "pad": "%s"}' % (b"y" * (i * 97 % 3000)), event="Stop",
                   received_ns=10**18 + i, host="h"),
            default_host="h",
            mtime_ns=0,
        )
        for i in range(60)
    ]  # fmt: skip
    agents: dict[AgentKey, AgentIds] = {("s", None): (uuid.uuid4(), None)}
    whole = copy_text(events, agents)
    pieces = list(copy_chunks(events, agents, chunk_bytes=2048))
    assert whole == b"".join(pieces)
    assert all(p.endswith(b"\n") for p in pieces)
    assert all(len(p) < 2048 + 3200 or p.count(b"\n") == 1 for p in pieces)
    assert 1 < len(pieces) < len(events)
    lines = whole.split(b"\n")[:-1]
    assert [20] * len(events) == [len(line.split(b"\t")) for line in lines]
