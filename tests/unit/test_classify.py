"""db.classify: one table maps every driver error to the daemon's error classes."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors as pgerr

from daemon import db
from daemon.errors import (
    EX_CONFIG,
    EX_TEMPFAIL,
    PermanentRowError,
    ServerTooOldError,
    TransientDbError,
    UnknownDbError,
)


def _wrapped(exc: Exception) -> sa.exc.DBAPIError:
    """What Alembic's SQLAlchemy engine raises around a psycopg error."""
    return sa.exc.OperationalError("SELECT 1", {}, exc)


CASES = [
    (psycopg.OperationalError("connection timeout expired"), TransientDbError),
    (psycopg.InterfaceError("the connection is closed"), TransientDbError),
    (pgerr.AdminShutdown("terminating connection due to administrator command"), TransientDbError),
    (pgerr.CannotConnectNow("the database system is starting up"), TransientDbError),
    (pgerr.InvalidPassword("password authentication failed"), TransientDbError),
    (pgerr.DeadlockDetected("deadlock detected"), TransientDbError),
    (pgerr.TooManyConnections("too many clients"), TransientDbError),
    (pgerr.DiskFull("could not extend file"), TransientDbError),
    (pgerr.InvalidCatalogName("database does not exist"), TransientDbError),
    (pgerr.LockNotAvailable("could not obtain lock"), TransientDbError),
    (pgerr.InsufficientPrivilege("permission denied for table agent_logs"), TransientDbError),
    (pgerr.QueryCanceled("canceling statement due to statement timeout"), TransientDbError),
    (pgerr.InvalidTextRepresentation("invalid input syntax for type json"), PermanentRowError),
    (pgerr.UniqueViolation("duplicate key"), PermanentRowError),
    (pgerr.ProgramLimitExceeded("index row size exceeds maximum"), PermanentRowError),
    (
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        PermanentRowError,
    ),
    (pgerr.UndefinedColumn("column does not exist"), UnknownDbError),
    (psycopg.ProgrammingError("something odd"), UnknownDbError),
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=lambda v: type(v).__name__)
def test_classify_maps_driver_errors_to_classes(exc: Exception, expected: type) -> None:
    """Each driver error lands in its class, bare or wrapped by SQLAlchemy (`.orig`)."""
    assert isinstance(db.classify(exc), expected)
    assert isinstance(db.classify(_wrapped(exc)), expected)
    assert db.is_driver_error(exc)
    assert db.is_driver_error(_wrapped(exc))


def test_classify_transient_exits_tempfail_for_one_shot_commands() -> None:
    """A one-shot command that cannot reach the database exits 75 (try again later)."""
    err = db.classify(_wrapped(psycopg.OperationalError("connection timeout expired")))
    assert EX_TEMPFAIL == getattr(err, "exit_code", None)
    assert "connection timeout expired" in str(err)


def test_is_driver_error_refuses_other_exceptions() -> None:
    """Only psycopg errors (bare or in `.orig`) are classified; a bug stays a bug."""
    assert not db.is_driver_error(ValueError("x"))
    assert not db.is_driver_error(KeyError("orig"))


@pytest.mark.parametrize("version_num", [100023, 130011, 140010])
def test_check_server_version_refuses_servers_older_than_15(version_num: int) -> None:
    """PostgreSQL before 15 (no NULLS NOT DISTINCT) is a configuration error, exit 78."""
    with pytest.raises(ServerTooOldError, match="needs PostgreSQL 15") as excinfo:
        db.check_server_version(version_num)
    assert EX_CONFIG == excinfo.value.exit_code


@pytest.mark.parametrize("version_num", [150000, 160004, 180000])
def test_check_server_version_accepts_15_and_newer(version_num: int) -> None:
    """15 and newer pass."""
    db.check_server_version(version_num)
