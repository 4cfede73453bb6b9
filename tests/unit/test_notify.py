"""daemon.notify: sd_notify(3) over a real AF_UNIX datagram socket, and the watchdog interval."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.notify import notify, watchdog_interval_s


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test as if not run by systemd."""
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)


def _bound(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a file path, like /run/systemd/notify."""
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    sock = _bound(path)
    yield sock, path
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace; NOTIFY_SOCKET spells it with a leading @."""
    name = f"session-db-test-{os.getpid()}-{secrets.token_hex(6)}"
    sock = _bound("\0" + name)
    yield sock, "@" + name
    sock.close()


def test_notify_sends_datagram_to_path_socket(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """notify() delivers the message as one datagram to a path NOTIFY_SOCKET and returns True."""
    sock, address = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert notify("READY=1")
    assert b"READY=1" == sock.recv(4096)


def test_notify_sends_datagram_to_abstract_socket(
    abstract_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NOTIFY_SOCKET starting with @ addresses the abstract namespace."""
    sock, address = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert notify("WATCHDOG=1")
    assert b"WATCHDOG=1" == sock.recv(4096)


def test_notify_one_datagram_per_message(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Successive messages arrive as separate datagrams, in order, UTF-8 encoded."""
    sock, address = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    messages = ["READY=1", "STATUS=db=up backlog=12 oldest=3s", "STATUS=café ✓", "STOPPING=1"]
    for m in messages:
        assert notify(m)
    assert [m.encode() for m in messages] == [sock.recv(4096) for _ in messages]


def test_notify_multiline_message_is_one_datagram(
    path_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several assignments separated by newlines travel in a single datagram."""
    sock, address = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert notify("STOPPING=1\nSTATUS=draining")
    assert b"STOPPING=1\nSTATUS=draining" == sock.recv(4096)


@pytest.mark.parametrize("value", [None, ""])
def test_notify_silent_false_when_unset(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NOTIFY_SOCKET (unset or empty) notify() returns False and does nothing."""
    if value is not None:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert not notify("READY=1")


def test_notify_false_when_socket_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NOTIFY_SOCKET that nobody listens on yields False, never an exception."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    assert not notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", "@session-db-test-nobody-" + secrets.token_hex(6))
    assert not notify("READY=1")


@pytest.mark.parametrize(
    ("usec", "expected"),
    [("30000000", 15.0), ("1000000", 0.5), ("1", 0.0000005)],
)
def test_notify_watchdog_interval_halves_watchdog_usec(
    usec: str, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """watchdog_interval_s() is half of WATCHDOG_USEC, in seconds."""
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert expected == watchdog_interval_s()


def test_notify_watchdog_interval_none_when_unset() -> None:
    """Without WATCHDOG_USEC there is no watchdog."""
    assert watchdog_interval_s() is None


def test_notify_watchdog_interval_respects_own_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_PID equal to our pid keeps the watchdog on."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert 10.0 == watchdog_interval_s()


def test_notify_watchdog_interval_none_for_other_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours."""
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None


@pytest.mark.parametrize("usec", ["soon", "1.5e7", "-30000000"])
def test_notify_watchdog_interval_none_for_invalid_usec(
    usec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WATCHDOG_USEC that is not a positive integer disables the watchdog, as in systemd."""
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert watchdog_interval_s() is None
