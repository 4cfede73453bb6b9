"""The commands of `session-db`, in groups; each group module holds its commands' arguments
(`register`) next to their handlers (`cmd_*`). The order here is the order of `--help`."""

from __future__ import annotations

from types import ModuleType

from daemon.commands import (
    archive,
    backfill,
    diagnose,
    hooks,
    ingest,
    prices,
    quarantine,
    reports,
    setup,
    upkeep,
)

GROUPS: tuple[ModuleType, ...] = (
    ingest,
    upkeep,
    diagnose,
    backfill,
    archive,
    reports,
    prices,
    quarantine,
    setup,
    hooks,
)
