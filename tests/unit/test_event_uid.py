"""event_uid: the spool file name, qualified by host, so names never collide across hosts."""

from __future__ import annotations

from daemon.event_rows import event_uid


def test_event_uid_hook_names_are_kept() -> None:
    """The hook's names end in `.<host>`: the name is the key, as before (re-delivery stays a no-op)."""
    name = "1795436016586690803.P12R0123456789abcdef.build-01"
    assert name == event_uid(name, "build-01")


def test_event_uid_foreign_names_get_the_host() -> None:
    """Any other name (a foreign writer's) gets `@<host>`: one name on two hosts is two keys."""
    assert "event.json@host-a" == event_uid("event.json", "host-a")
    assert event_uid("event.json", "host-a") != event_uid("event.json", "host-b")
    assert "x.host-a@host-b" == event_uid("x.host-a", "host-b")
