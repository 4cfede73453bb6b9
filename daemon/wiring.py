"""Objects built from the settings, in one place: the redactor and the conversation archive.

Modules that hold the objects (redaction, messages) take plain arguments and never import
daemon.config for it, so the settings module and those modules import in one direction only.
"""

from __future__ import annotations

from daemon.config import Settings
from daemon.messages import MessageArchive
from daemon.redaction import Redactor


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
