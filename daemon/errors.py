"""Exceptions and the exit codes they map to."""

from __future__ import annotations

EX_OK = 0
EX_PRICE_DRIFT = 1  # `prices check`: some model is unpriced or priced unlike Claude Code
EX_USAGE = 64  # the command line is wrong: a flag's value, a missing argument
EX_DATAERR = 65  # an input file given on the command line is unreadable or malformed
EX_SOFTWARE = 70  # internal error: a side task died, an invariant broke
EX_IOERR = 74  # our own durable write failed (fsync, ENOSPC): fail-stop
EX_TEMPFAIL = 75  # sysexits: the database is unreachable or busy, try again later
EX_CONFIG = 78  # bad configuration or schema mismatch: do not restart-loop


class SessionDbError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = EX_SOFTWARE


class ConfigError(SessionDbError):
    """A setting or file is wrong; the message names it and the fix."""

    exit_code = EX_CONFIG


class UsageError(SessionDbError):
    """A command-line value is wrong; the message names the flag and what it accepts."""

    exit_code = EX_USAGE


class InputDataError(SessionDbError):
    """A file named on the command line cannot be used; the message names the file and the entry."""

    exit_code = EX_DATAERR


class InstallerError(ConfigError):
    """A settings or hook file cannot be changed safely; the message names it and the fix."""


class SchemaMismatchError(ConfigError):
    """The database is at another Alembic revision than this code expects."""


class ServerTooOldError(ConfigError):
    """The PostgreSQL server (or the embedded cluster's binaries) predates what the schema needs."""


class ClusterError(ConfigError):
    """The embedded cluster cannot be found, created, started or stopped.

    The message names the file or setting at fault and what to do about it. It is a
    configuration error (exit 78): restarting the daemon would not install PostgreSQL.
    The running daemon catches it when it restarts a cluster that died, and retries.
    """


class FatalIOError(SessionDbError):
    """Our own durable state could not be written: stop rather than risk loss."""

    exit_code = EX_IOERR


class TransientDbError(SessionDbError):
    """The database is unreachable or busy: retry the same batch later.

    The daemon retries; a one-shot command (`status`, `migrate`, `ingest --once`) exits 75.
    """

    exit_code = EX_TEMPFAIL


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


class RefusedInputError(SessionDbError):
    """A spool file that cannot be an event (not a regular file, too large): quarantine it.

    `reason` is the machine-readable quarantine reason, `detail` says why.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RedactionBudgetError(SessionDbError):
    """Redacting one payload took longer than its budget: quarantine it, never store it as sent."""


class PartitionBusyError(SessionDbError):
    """A partitioned table stayed locked by other sessions (long queries) past every retry."""

    exit_code = EX_TEMPFAIL


class PartitionPermissionError(ConfigError):
    """This role may not create or drop partitions (it does not own the table)."""
