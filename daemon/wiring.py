"""Objects built from the settings, in one place: the database sink, the redactor, the
archive, the ingestor and the workflow tracker.

Modules that hold the objects (redaction, messages) take plain arguments and never import
daemon.config for it, so the settings module and those modules import in one direction only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from daemon import config
from daemon.config import Settings
from daemon.ingest import Ingestor
from daemon.messages import MessageArchive
from daemon.redaction import Redactor
from daemon.sink import PostgresSink
from daemon.spool import Spool
from daemon.transcripts import TranscriptReader, transcript_roots
from daemon.workflows import SessionTracker


def postgres_sink(settings: Settings, url: str) -> PostgresSink:
    """The PostgresSink the settings describe (host, connect and statement timeouts)."""
    return PostgresSink(
        url,
        host=settings.host,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_ms=settings.statement_timeout_ms,
        lock_timeout_ms=config.LOCK_TIMEOUT_MS,
    )


def redactor(settings: Settings) -> Redactor:
    """The redaction rules and privacy switches the settings ask for."""
    return Redactor(
        enabled=settings.redact,
        extra_keys=settings.redact_keys,
        extra_patterns=settings.redact_patterns,
        drop_prompts=settings.drop_prompts,
        drop_tool_output=settings.drop_tool_output,
    )


def archive(settings: Settings) -> MessageArchive:
    """The conversation archive: its mode, this redactor, the field cap."""
    return MessageArchive(settings.archive, redactor(settings), settings.field_cap_bytes)


def ingestor(settings: Settings, spool: Spool, sink: PostgresSink) -> Ingestor:
    """The spool's ingestor with the settings' batch limits, caps and redaction."""
    return Ingestor(
        spool,
        sink,
        host=settings.host,
        batch_max_files=settings.batch_max_files,
        batch_max_bytes=settings.batch_max_bytes,
        foreign_grace_s=settings.foreign_grace_s,
        field_cap_bytes=settings.field_cap_bytes,
        redactor=redactor(settings),
        keep_originals=settings.keep_originals,
        max_file_bytes=settings.max_file_bytes,
        pause_dir=settings.state_dir,
        parse_workers=settings.parse_workers,
    )


def transcript_reader(
    settings: Settings, sink: PostgresSink, also_under: Iterable[Path] = ()
) -> TranscriptReader:
    """The transcript reader: the settings' archive, reading only below Claude's projects/
    folders, the `transcript_roots` setting and `also_under` (folders a backfill names)."""
    roots = transcript_roots(extra=[*settings.transcript_roots, *also_under])
    return TranscriptReader(sink, settings.host, archive=archive(settings), allowed_roots=roots)


def tracker(settings: Settings, sink: PostgresSink) -> SessionTracker:
    """The workflow state.json tracker; state is redacted with the settings' rules."""
    return SessionTracker(sink, settings.host, redactor(settings))
