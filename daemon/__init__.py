"""session-db: Claude Code hook events, transcripts and workflow state in PostgreSQL."""

from importlib import metadata

try:
    __version__ = metadata.version("session-db")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"
