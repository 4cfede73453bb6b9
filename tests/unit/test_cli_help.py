"""Every command and sub-command answers --help (the README promises it) without touching a
database or the settings."""

from __future__ import annotations

import argparse

import pytest

from daemon.cli import build_parser


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:  # argparse has no public walk over sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_cli_help_lists_every_documented_command() -> None:
    """The commands the README lists all exist (a walk that found nothing would pass below)."""
    top = {c[0] for c in COMMANDS}
    assert {"run", "ingest", "status", "doctor", "hooks", "report", "top", "budget", "projects",
            "search", "show", "backfill", "prices", "quarantine", "migrate", "maintain", "prune",
            "service", "roles", "config", "psql"} <= top  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_cli_help_every_command_answers_help(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """`session-db COMMAND --help` exits 0 and prints a usage line naming the command."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert 0 == exited.value.code
    assert f"usage: session-db {' '.join(command)}" in capsys.readouterr().out
