"""Exceptions and the exit codes they map to."""

from __future__ import annotations

EX_OK = 0
EX_PRICE_DRIFT = 1  # `prices check`: some model is unpriced or priced unlike Claude Code
EX_SOFTWARE = 70  # internal error: a side task died, an invariant broke
EX_IOERR = 74  # our own durable write failed (fsync, ENOSPC): fail-stop
EX_CONFIG = 78  # bad configuration or schema mismatch: do not restart-loop


class SessionDbError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = EX_SOFTWARE


class ConfigError(SessionDbError):
    """A setting or file is wrong; the message names it and the fix."""

    exit_code = EX_CONFIG


class SchemaMismatchError(ConfigError):
    """The database is at another Alembic revision than this code expects."""


class FatalIOError(SessionDbError):
    """Our own durable state could not be written: stop rather than risk loss."""

    exit_code = EX_IOERR


class TransientDbError(SessionDbError):
    """The database is unreachable or busy: retry the same batch later."""


class PermanentRowError(SessionDbError):
    """The database rejected a value: bisect the batch and quarantine the bad file."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class UnknownDbError(SessionDbError):
    """An error we could not classify: retried a bounded number of times, then bisected."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
