"""structlog setup: JSON lines for machines (journald), readable lines on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer

# syslog priorities for journald's "<N>" line prefix (sd-daemon(3)).
PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "info": 6, "debug": 7}


COMPONENT_PREFIXES = ("session_db.", "daemon.")  # stripped from logger names: "ingest", "cluster"


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name given to `structlog.get_logger(name)`."""

    def __init__(self, file: Any, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def _named_factory(stream: Any) -> Any:
    def factory(*args: Any) -> _NamedPrintLogger:
        name = str(args[0]) if args else None
        for prefix in COMPONENT_PREFIXES:
            if name is not None and name.startswith(prefix):
                name = name[len(prefix) :]
        return _NamedPrintLogger(stream, name)

    return factory


def _add_component(logger: Any, _: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every line says which part of session-db wrote it (`component=ingest`)."""
    name = getattr(logger, "name", None)
    if name and "component" not in event:
        event["component"] = name
    return event


def _journal_prefix(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["_priority"] = PRIORITY.get(method, 6)
    return event


def _json_renderer(journal: bool) -> Any:
    def render(_: Any, __: str, event: dict[str, Any]) -> str:
        prio = event.pop("_priority", 6)
        body = orjson.dumps(event, default=str).decode()
        return f"<{prio}>{body}" if journal else body

    return render


def _scrubbing(renderer: Any, hidden: tuple[str, ...]) -> Any:
    """Wrap the final renderer: secrets (the database password) never reach the output.

    Applied to the rendered line, so messages, tracebacks and exception notes are covered alike.
    """
    from daemon.dsn import scrub

    def render(logger: Any, method: str, event: dict[str, Any]) -> str:
        return scrub(renderer(logger, method, event), hidden)

    return render


def configure(
    fmt: str = "auto",
    *,
    stream: Any = None,
    journal: bool | None = None,
    secrets: tuple[str, ...] = (),
    level: int = logging.INFO,
) -> None:
    """Configure structlog. fmt: auto | json | console; `secrets` are masked in every line;
    lines below `level` are dropped."""
    import os

    stream = stream or sys.stderr
    if journal is None:
        journal = bool(os.environ.get("JOURNAL_STREAM"))
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty() and not journal)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_component,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_console:
        processors = [
            *shared,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    else:
        processors = [
            *shared,
            _journal_prefix,
            # Tracebacks as data, without local variables (they may hold payloads or secrets).
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _json_renderer(journal),
        ]
    if secrets:
        processors[-1] = _scrubbing(processors[-1], secrets)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_named_factory(stream),
        cache_logger_on_first_use=False,
    )
