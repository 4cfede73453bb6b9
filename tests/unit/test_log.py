"""daemon.log: JSON lines for journald with priorities, no local variables in tracebacks."""

from __future__ import annotations

import io
import json

import structlog

from daemon import log


def test_log_json_lines_carry_journald_priority() -> None:
    """Under journald each line starts with <N> (syslog priority) followed by one JSON object."""
    buf = io.StringIO()
    log.configure("json", stream=buf, journal=True)
    structlog.get_logger().error("database_down", error="refused")
    structlog.get_logger().info("batch_committed", files=3)
    first, second = buf.getvalue().splitlines()
    assert ("<3>", "database_down") == (first[:3], json.loads(first[3:])["event"])
    assert ("<6>", 3) == (second[:3], json.loads(second[3:])["files"])


def test_log_tracebacks_never_show_local_variables() -> None:
    """An exception logged with its traceback does not reveal the values of local variables."""
    buf = io.StringIO()
    log.configure("json", stream=buf, journal=False)
    secret = "postgresql://u:hunter2@db/x"
    try:
        raise ValueError("connection failed")
    except ValueError:
        structlog.get_logger().exception("crashed", url_len=len(secret))
    line = buf.getvalue()
    assert "hunter2" not in line
    assert "ValueError" == json.loads(line)["exception"][0]["exc_type"]


def test_log_lines_name_the_component_that_wrote_them() -> None:
    """A line logged through get_logger("session_db.ingest") carries component=ingest."""
    buf = io.StringIO()
    log.configure("json", stream=buf, journal=False)
    structlog.get_logger("session_db.ingest").info("batch_committed", files=1)
    structlog.get_logger("daemon.cluster").info("cluster_started")
    structlog.get_logger().info("anonymous")
    first, second, third = (json.loads(line) for line in buf.getvalue().splitlines())
    assert ("ingest", "cluster") == (first["component"], second["component"])
    assert "component" not in third
