"""Print the sample outputs of docs/reports.md from the Claude Code 2.1.330 fixtures.

The fixture sessions (main, perm, extras, tui) are ingested through the spool and their
transcripts; the `main` session stops after its subagent started (events 01-20), so it is still
running; then every response is moved in time so that the last one was 12 minutes ago (so there
is an active 5-hour block). Outputs: budget set, report daily (table and JSON), report blocks --active, top --once.

  .venv/bin/python tests/support/docs_samples.py [--url URL]   (default: a private cluster)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench._common import database  # noqa: E402
from tests.support.spoolwriter import write_event  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "claude-code-2.1.330"
RECORDED_PROJECTS = "/tmp/ccrun/home/.claude/projects/-tmp-ccrun-work-"
SCENARIOS = ("main", "perm", "extras", "tui")
RUNNING_UNTIL = 20  # main: events after this one (subagent stop, Stop, SessionEnd) are left out
SHIFT = """
UPDATE token_usage SET occurred_at = occurred_at
    + (now() - interval '12 minutes' - (SELECT max(occurred_at) FROM token_usage))
"""
COMMANDS = (
    ("budget", "set", "--daily", "5", "--tz", "Europe/Berlin"),
    ("report", "daily", "--tz", "Europe/Berlin"),
    ("report", "daily", "--tz", "Europe/Berlin", "--json"),
    ("report", "blocks", "--active", "--tz", "Europe/Berlin"),
    ("top", "--once"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url")
    ap.add_argument("--columns", default="100")
    args = ap.parse_args()
    import psycopg

    with tempfile.TemporaryDirectory() as tmp, database(Path(tmp) / "state", args.url) as (url, _):
        root = Path(tmp)
        spool = root / "spool"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSION_DB_", "CLAUDE_"))}
        env.update(SESSION_DB_URL=url, SESSION_DB_SPOOL=str(spool), SESSION_DB_STATE_DIR=str(root / "st"),
                   XDG_CONFIG_HOME=str(root / "cfg"), COLUMNS=args.columns, SESSION_DB_LOG_FORMAT="json")  # fmt: skip
        projects = root / "projects"
        env["SESSION_DB_TRANSCRIPT_ROOTS"] = str(projects)  # transcripts are read only below a root
        for scenario in SCENARIOS:
            shutil.copytree(FIXTURES / "transcripts" / scenario, projects / scenario)
            for f in sorted((FIXTURES / "hooks" / "all" / scenario).iterdir()):
                if scenario == "main" and int(f.name.split("_", 1)[0]) > RUNNING_UNTIL:
                    continue
                payload = f.read_bytes().replace(
                    f"{RECORDED_PROJECTS}{scenario}/".encode(), f"{projects / scenario}/".encode()
                )
                write_event(spool, payload, event=f.stem.split("_", 1)[1], fsync=False)
        cli = [sys.executable, "-m", "daemon"]
        subprocess.run([*cli, "ingest", "--once"], env=env, check=True, capture_output=True)
        with psycopg.connect(url) as conn:
            conn.execute(SHIFT)
        for command in COMMANDS:
            done = subprocess.run([*cli, *command], env=env, check=True, capture_output=True, text=True)
            print(f"$ session-db {' '.join(command)}")
            print(done.stdout)


if __name__ == "__main__":
    main()
