"""Project aliases (`session-db projects`): several directories, on any host, counted as one
project in usage_attribution and every report."""

from __future__ import annotations

from typing import Any, cast

import psycopg

from daemon import db
from daemon.errors import ConfigError


def normalize(path: str) -> str:
    """The path as transcripts write cwd: absolute, without a trailing slash (no resolving: the
    directory may live on another machine)."""
    if not path.startswith("/"):
        raise ConfigError(f"project path must be absolute (as Claude Code records cwd): {path!r}")
    return path.rstrip("/") or "/"


def set_alias(conn: psycopg.Connection[Any], path: str, name: str) -> None:
    if not name.strip():
        raise ConfigError("project name must not be empty")
    with db.transaction(conn) as cur:
        cur.execute(db.UPSERT_PROJECT_ALIAS, (normalize(path), name.strip()))


def remove_alias(conn: psycopg.Connection[Any], path: str) -> bool:
    with db.transaction(conn) as cur:
        cur.execute(db.DELETE_PROJECT_ALIAS, (normalize(path),))
        return cur.rowcount > 0


def list_aliases(conn: psycopg.Connection[Any]) -> list[tuple[str, str, int]]:
    with db.transaction(conn) as cur:
        cur.execute(db.SELECT_PROJECT_ALIASES)
        rows = cast(list[tuple[str, str, int]], cur.fetchall())
        return [(n, p, c) for n, p, c in rows]


def render(rows: list[tuple[str, str, int]]) -> str:
    if not rows:
        return "no project aliases (add one: session-db projects alias PATH NAME)\n"
    wn = max(len("Project"), *(len(n) for n, _, _ in rows))
    wp = max(len("Path"), *(len(p) for _, p, _ in rows))
    lines = [f"{'Project':<{wn}}  {'Path':<{wp}}  Responses"]
    lines += [f"{n:<{wn}}  {p:<{wp}}  {c:>9,}" for n, p, c in rows]
    return "\n".join(lines) + "\n"
