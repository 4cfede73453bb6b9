"""The roles SQL: safe names, and a writer granted exactly what the daemon's statements write."""

from __future__ import annotations

import re

import pytest

from daemon import db, roles
from daemon.errors import ConfigError


def _written_tables() -> dict[str, set[str]]:
    """table → {INSERT, UPDATE, DELETE} from every statement in daemon/db.py."""
    found: dict[str, set[str]] = {}
    for name in dir(db):
        text = getattr(db, name)
        if not (name.isupper() and isinstance(text, str)):
            continue
        for verb, table in re.findall(r"\b(INSERT INTO|UPDATE|DELETE FROM|TRUNCATE)\s+(\w+)", text):
            if verb == "UPDATE" and table == "SET":
                continue  # ON CONFLICT ... DO UPDATE SET: counted below
            found.setdefault(table, set()).add(verb.split()[0])
        if "DO UPDATE" in text:  # ON CONFLICT DO UPDATE needs UPDATE (each INSERT of an upsert)
            for table in re.findall(r"\bINSERT INTO\s+(\w+)", text):
                found[table].add("UPDATE")
    return found


def test_roles_writer_grants_are_exactly_what_db_statements_write() -> None:
    """Every table a statement in daemon/db.py writes has a writer grant for that verb, and no grant is unused.

    `prices` is the exception by design: `prices set` is an owner's change, not the daemon's; so
    are `budget set/rm` and `projects alias/rm`. (`prune` drops partitions of agent_logs and
    messages as the owner: no DELETE statement.) Tables kept by triggers are written as the writer.
    """
    written = _written_tables()
    written.pop("prices")
    for table in ("budgets", "project_aliases"):  # reports: the user's settings, like prices
        written.pop(table)
    written.update({t: {"INSERT", "UPDATE"} for t in roles.TRIGGER_WRITTEN})
    assert not any("DELETE" in v or "TRUNCATE" in v for v in written.values()), (
        "the daemon deletes nothing"
    )
    granted = {
        table: {verb for verb in ("INSERT", "UPDATE") if verb in grant}
        for table, grant in roles.WRITER_GRANTS.items()
    }
    assert written == granted


def test_roles_script_uses_the_given_names_only() -> None:
    """Overridden names replace the defaults everywhere in the SQL."""
    sql = roles.script(roles.Roles(owner="o_x", writer="w_x", analyst="a_x"))
    for default in (roles.DEFAULT_OWNER, roles.DEFAULT_WRITER, roles.DEFAULT_ANALYST):
        assert default not in sql
    assert 'CREATE ROLE "o_x" NOLOGIN' in sql
    assert 'ALTER DEFAULT PRIVILEGES FOR ROLE "o_x"' in sql
    assert 'GRANT INSERT, UPDATE (session_id) ON public.agent_logs TO "w_x"' in sql


def test_roles_script_is_one_transaction_of_guarded_statements() -> None:
    """Roles are created only if missing and writer grants only for tables that exist (idempotent)."""
    sql = roles.script(roles.Roles())
    assert 1 == sql.count("BEGIN;")
    assert 1 == sql.count("COMMIT;")
    assert sql.count("IF NOT EXISTS (SELECT FROM pg_roles") == 3
    assert sql.count("IF to_regclass(") == len(roles.WRITER_GRANTS)
    assert "DELETE" not in sql


@pytest.mark.parametrize(
    "names",
    [
        {"owner": 'x"; DROP TABLE agent_logs; --'},
        {"writer": "Writer"},
        {"analyst": "1analyst"},
        {"analyst": "a" * 64},
        {"analyst": ""},
        {"owner": "same", "writer": "same"},
    ],
)
def test_roles_refuses_unsafe_or_ambiguous_names(names: dict[str, str]) -> None:
    """Names that would need quoting, or two roles with one name, are a ConfigError (exit 78)."""
    with pytest.raises(ConfigError):
        roles.Roles(**names)
