"""`session-db status`: what waits, what failed, whether the database answers."""

from __future__ import annotations

from typing import Any

from daemon import config, migrations
from daemon.spool import Spool


def collect(settings: config.Settings) -> dict[str, Any]:
    """A JSON-ready report (schema documented in the README)."""
    spool = Spool(settings.spool)
    backlog = spool.backlog()
    report: dict[str, Any] = {
        "host": settings.host,
        "spool": {
            "path": str(settings.spool),
            "backlog_files": backlog.files,
            "backlog_bytes": backlog.bytes,
            "oldest_age_s": None
            if backlog.oldest_age_s is None
            else round(backlog.oldest_age_s, 1),
            "quarantined": sum(1 for _ in spool.quarantined()),
        },
        "database": {
            "url": config.mask_url(settings.url) or "(embedded cluster)",
            "reachable": False,
        },
        "hosts": [],
        "daemons": [],
    }
    from daemon.database import database

    try:
        with database(settings) as url:
            from daemon import db

            state = migrations.schema_state(url, connect_timeout_s=settings.connect_timeout_s)
            report["database"].update(
                reachable=True,
                schema_revision=state.revision,
                expected_revision=state.head,
                schema_ok=state.usable,
                schema_state=state.verdict,
            )
            if state.usable:
                with db.connect(url, connect_timeout_s=settings.connect_timeout_s) as conn:
                    rows = conn.execute(db.STATUS_COUNTS).fetchall()
                    daemons = conn.execute(db.STATUS_DAEMONS).fetchall()
                    from daemon.reports import budget_rows

                    report["budgets"] = budget_rows(conn, None)  # spend against each budget
                    if state.verdict == "head":  # the cost engine's views exist
                        from daemon import price_drift

                        report["price_drift"] = [d.as_json() for d in price_drift.find(conn)]
                names = ("host", "pid", "version", "started_at", "last_heartbeat", "events_ingested",
                         "backlog_files", "last_error", "stale", "state", "stopped_at")  # fmt: skip
                report["daemons"] = [dict(zip(names, d, strict=True)) for d in daemons]
                report["hosts"] = [
                    {"host": h, "last_event_at": le, "last_ingested_at": li, "events": n}
                    for h, le, li, n in rows
                ]
    except Exception as exc:  # noqa: BLE001 - status reports any failure instead of raising
        from daemon.dsn import scrub, secrets

        report["database"]["error"] = scrub(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            secrets(settings.url),
        )
    return report


def render(r: dict[str, Any]) -> str:
    s, d = r["spool"], r["database"]
    oldest = "-" if s["oldest_age_s"] is None else s["oldest_age_s"]
    lines = [
        f"host:        {r['host']}",
        f"spool:       {s['path']}",
        f"  backlog:   {s['backlog_files']} files, {s['backlog_bytes']} bytes, oldest {oldest} s",
        f"  quarantine: {s['quarantined']} files",
        f"database:    {d['url']}  {'reachable' if d['reachable'] else 'UNREACHABLE: ' + d.get('error', '')}",
    ]
    if d["reachable"]:
        ok = {
            "head": "ok",
            "newer_compatible": "ok (newer, from a newer session-db; compatible)",
            "newer_incompatible": "newer and incompatible: upgrade session-db on this host",
        }.get(d.get("schema_state", ""), "run `session-db migrate`")
        lines.append(
            f"  schema:    {d.get('schema_revision')} (expected {d.get('expected_revision')}) {ok}"
        )
    for d in r.get("daemons", []):
        state = {"stale": "STALE", "stopped": "stopped"}.get(d["state"], d["state"])
        lines.append(
            f"  daemon {d['host']} pid {d['pid']} ({state}): {d['events_ingested']} events, "
            f"backlog {d['backlog_files']}, last heartbeat {d['last_heartbeat']}"
            + (f", last error: {d['last_error']}" if d["last_error"] else "")
        )
    for h in r["hosts"]:
        lines.append(
            f"  {h['host']}: {h['events']} events, last event {h['last_event_at']}, "
            f"last ingested {h['last_ingested_at']}"
        )
    from daemon.reports import budget_lines

    lines += budget_lines(r.get("budgets", []))[1:]
    for p in r.get("price_drift", []):
        lines.append(f"  price drift: model {p['model']!r}: {p['unpriced_responses']} unpriced responses, "
                     f"{p['sessions_differing']} sessions differ from Claude Code; run: {p['fix']}")  # fmt: skip
    return "\n".join(lines) + "\n"
