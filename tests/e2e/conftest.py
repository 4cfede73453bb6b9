"""End to end: the real Claude Code CLI (pinned 2.1.330 and 2.1.332; every test runs on both)
against our fake Anthropic API, with our hook installed by `session-db hooks install`, the daemon
ingesting into pytest-postgresql, and a second capturing hook recording what Claude Code really
fired (docs/design/claude-code.md §16, §17).

Each version is installed once per machine with npm into its own folder of a cache directory
($SESSION_DB_E2E_CACHE, default ~/.cache/session-db-e2e; the CLI lands in
claude-code-<version>/ below it). Without a reachable npm registry the tests fail and say so:
they are never skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from daemon.claude_events import TOOL_EVENTS, describe_detection, detect_claude_events
from tests.acceptance.conftest import Daemon, Env, wait_for
from tests.e2e.fake_api import MODEL, FakeAnthropicAPI, Record, Usage, total

# The version before PreSkillShellCommand and the newest wrapper on npm (docs/design/claude-code.md §17).
CLAUDE_CODE_VERSIONS = ("2.1.330", "2.1.332")
NEWEST_CLAUDE_CODE = CLAUDE_CODE_VERSIONS[-1]
PACKAGE_NAME = "@anthropic-ai/claude-code"
# The wrapper package's postinstall only copies this file; called directly it needs no script.
PLATFORM_BINARY = Path("node_modules/@anthropic-ai/claude-code-linux-x64/claude")
INSTALL_TIMEOUT_S = 600  # the platform package is ~380 MB
# npm error codes that mean the registry could not be reached at all.
NETWORK_ERRORS = (
    "ECONNREFUSED",
    "ENOTFOUND",
    "ETIMEDOUT",
    "EAI_AGAIN",
    "ECONNRESET",
    "ENETUNREACH",
)
# pytest-timeout counts fixture setup, and the first e2e test pays for the install.
TEST_TIMEOUT_S = INSTALL_TIMEOUT_S + 180
CLI_TIMEOUT_S = 90
WAIT_S = 30.0

# The capture hook listens to every event the installer knows that the CLI under test accepts
# (docs/design/claude-code.md §5 and §17 minus the two worktree events; PreSkillShellCommand only from 2.1.332,
# since older versions open a dialog for it).

# Prints nothing, always exits 0: one line in `events` and one payload file per firing, named
# <receive time ns>.<event>.<random> so that sorting the names gives the firing order.
CAPTURE_HOOK = """#!/bin/sh
# e2e capture hook: the ground truth of the events Claude Code fired.
d={dir}
f=$(mktemp "$d/payloads/$(date +%s%N).$1.XXXXXXXXXX") && cat >"$f"
printf '%s\\n' "$1" >>"$d/events"
exit 0
"""


# ---------------------------------------------------------------------------------------------
# Claude Code, installed once per machine


@dataclass(frozen=True)
class ClaudeCode:
    """One installed, pinned CLI: its version and the native binary to run."""

    version: str
    binary: Path

    @property
    def events(self) -> tuple[str, ...]:
        """The events `hooks install` (and the capture hook) use for this version."""
        return detect_claude_events(self.version)


def cache_dir(version: str) -> Path:
    """Where one pinned CLI is installed: claude-code-<version> under $SESSION_DB_E2E_CACHE
    (default ~/.cache/session-db-e2e)."""
    configured = os.environ.get("SESSION_DB_E2E_CACHE")
    base = (
        Path(configured).expanduser() if configured else Path.home() / ".cache" / "session-db-e2e"
    )
    return base / f"claude-code-{version}"


def _version_of(binary: Path) -> str | None:
    """`claude --version` output ("2.1.330 (Claude Code)"), None if it does not run."""
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return None
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _is_pinned(binary: Path, version: str) -> bool:
    return (_version_of(binary) or "").split(" ")[0] == version


def _npm_registry(npm: str) -> str:
    try:
        proc = subprocess.run(
            [npm, "config", "get", "registry"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "the npm registry"
    return proc.stdout.strip() or "the npm registry"


def install_claude_code(prefix: Path, version: str) -> Path:
    """The platform binary of CLI `version`, installed with npm into `prefix` unless present.

    npm writes into a staging directory that is renamed into place only when the binary runs,
    under a file lock, so an interrupted or concurrent install never leaves a half tree behind.
    """
    package = f"{PACKAGE_NAME}@{version}"
    binary = prefix / PLATFORM_BINARY
    if _is_pinned(binary, version):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            f"npm is not on PATH: the e2e tests install {package} with npm. Install Node.js and npm "
            "(Debian/Ubuntu: apt-get install nodejs npm) and run again",
            pytrace=False,
        )
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with (prefix.parent / f".{prefix.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_pinned(binary, version):
            return binary
        staging = Path(tempfile.mkdtemp(dir=prefix.parent, prefix=f".{prefix.name}.staging-"))
        try:
            command = [
                npm,
                "install",
                "--prefix",
                str(staging),
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--no-update-notifier",
                package,
            ]
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"`{shlex.join(command)}` did not finish in {INSTALL_TIMEOUT_S} s: is "
                    f"{_npm_registry(npm)} reachable from this machine?",
                    pytrace=False,
                )
            if proc.returncode != 0:
                said = proc.stderr or proc.stdout
                unreachable = any(code in said for code in NETWORK_ERRORS)
                pytest.fail(
                    f"`{shlex.join(command)}` failed with exit {proc.returncode}"
                    + (" because npm cannot reach the registry" if unreachable else "")
                    + f". The e2e tests need the npm registry ({_npm_registry(npm)}) to be "
                    f"reachable, or an installed CLI at {prefix} ($SESSION_DB_E2E_CACHE). "
                    f"npm said:\n{said[-3000:]}",
                    pytrace=False,
                )
            if not _is_pinned(staging / PLATFORM_BINARY, version):
                pytest.fail(
                    f"npm installed {package} but {PLATFORM_BINARY} is missing or reports "
                    f"{_version_of(staging / PLATFORM_BINARY)!r} (the e2e tests need linux-x64)",
                    pytrace=False,
                )
            staging.chmod(0o755)  # mkdtemp made it 0700; the cache may be shared
            if prefix.exists():
                shutil.rmtree(prefix)  # an earlier, broken install
            staging.rename(prefix)
            sys.stderr.write(f"\ne2e: installed {package} in {time.monotonic() - started:.1f} s\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return binary


@pytest.fixture(scope="session", params=CLAUDE_CODE_VERSIONS, ids=lambda v: f"cc{v}")
def claude_code(request: pytest.FixtureRequest) -> ClaudeCode:
    """Each pinned Claude Code CLI in turn (installed on first use; fails when npm cannot fetch it)."""
    version = str(request.param)
    return ClaudeCode(version, install_claude_code(cache_dir(version), version))


@pytest.fixture(scope="session")
def newest_claude_code() -> ClaudeCode:
    """Only the newest pinned CLI (for the per-model price sessions)."""
    return ClaudeCode(
        NEWEST_CLAUDE_CODE, install_claude_code(cache_dir(NEWEST_CLAUDE_CODE), NEWEST_CLAUDE_CODE)
    )


# ---------------------------------------------------------------------------------------------
# One test's world: fake API, daemon, projects with private HOMEs


@dataclass
class CliRun:
    """One `claude -p --output-format json` invocation."""

    returncode: int
    result: dict[str, Any]
    stderr: str
    seconds: float

    @property
    def session_id(self) -> str:
        return str(self.result["session_id"])


@dataclass
class Project:
    """A throw-away project dir with its own HOME, TMPDIR and capture hook."""

    name: str
    root: Path
    runs: list[CliRun] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return self.root / "project"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def capture(self) -> Path:
        return self.root / "capture"

    @property
    def settings(self) -> Path:
        return self.dir / ".claude" / "settings.local.json"

    def fired(self) -> Counter[str]:
        """Events the capture hook saw, by name."""
        events = self.capture / "events"
        return Counter(events.read_text().split()) if events.exists() else Counter()

    def payloads(self, event: str | None = None) -> list[dict[str, Any]]:
        """The stdin of every captured firing in firing order (an empty stdin gives {})."""
        out = []
        for f in sorted((self.capture / "payloads").iterdir()):
            name = f.name.split(".")[1]
            if event is None or name == event:
                text = f.read_text()
                out.append({"hook_event_name": name, **(json.loads(text) if text.strip() else {})})
        return out

    def transcripts(self, session_id: str) -> list[Path]:
        """The session's transcript files: the main JSONL and its subagents' files."""
        projects = self.home / ".claude" / "projects"
        return sorted(projects.glob(f"*/{session_id}.jsonl")) + sorted(
            projects.glob(f"*/{session_id}/subagents/*.jsonl")
        )


class Lab:
    """The fake API, one daemon on a fresh database, and helpers to run and inspect scenarios."""

    def __init__(
        self, tmp_path: Path, db_url: str, claude: ClaudeCode, api: FakeAnthropicAPI
    ) -> None:
        self.tmp_path = tmp_path
        self.cli = claude
        self.claude = claude.binary
        self.api = api
        root = tmp_path / "session-db"
        (root / "home").mkdir(parents=True)
        self.data_dir = root / "data"
        # Each project runs Claude Code with a HOME of its own (under tmp_path), so the daemon,
        # which reads transcripts only below Claude's projects/ folders, is told where they are.
        self.env = Env(
            root, db_url,
            extra={"HOME": str(root / "home"), "SESSION_DB_TRANSCRIPT_ROOTS": str(tmp_path)},
        )  # fmt: skip
        self.daemon: Daemon | None = None

    # -- setup ------------------------------------------------------------------------------

    def start_daemon(self) -> Daemon:
        self.daemon = Daemon(self.env, self.tmp_path / "daemon.log")
        return self.daemon

    def project(self, name: str) -> Project:
        """A project with the capture hook for every event, then ours via `hooks install`."""
        p = Project(name, self.tmp_path / name)
        for d in (p.dir / ".claude", p.home, p.tmp, p.capture / "payloads"):
            d.mkdir(parents=True)
        # A project memory file, so InstructionsLoaded fires as in a real project.
        (p.dir / "CLAUDE.md").write_text("# e2e project\n\nFollow the scripted steps.\n")
        hook = p.capture / "capture-hook"
        hook.write_text(CAPTURE_HOOK.format(dir=shlex.quote(str(p.capture))))
        hook.chmod(0o755)
        p.settings.write_text(
            json.dumps({"hooks": capture_hooks(hook, self.cli.events)}, indent=2) + "\n"
        )
        done = subprocess.run(
            [session_db_cli(), "hooks", "install", "--project", str(p.dir)],
            env={
                **self.env.vars(),
                "HOME": str(p.home),
                "PATH": f"{self.claude.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "SESSION_DB_DATA_DIR": str(self.data_dir),
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == done.returncode, done.stderr
        assert done.stdout.startswith(describe_detection(self.cli.version)), done.stdout
        hooks = json.loads(p.settings.read_text())["hooks"]
        handlers = {
            event: [h["command"] for g in groups for h in g.get("hooks", [])]
            for event, groups in hooks.items()
        }
        # `hooks install` kept every capture handler and added ours beside it.
        assert [] == [e for e in self.cli.events if not any(str(hook) in c for c in handlers[e])]
        assert [] == [e for e in handlers if not any("session-db-hook" in c for c in handlers[e])]
        assert set(self.cli.events) == set(handlers)
        return p

    # -- running the CLI --------------------------------------------------------------------

    def cli_env(self, p: Project, scenario: str) -> dict[str, str]:
        """Built from scratch: nothing inherited reaches Claude Code or the hooks it runs."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(p.home),
            "TMPDIR": str(p.tmp),
            "LANG": "C.UTF-8",
            "SHELL": shutil.which("bash") or "/bin/sh",
            "ANTHROPIC_BASE_URL": self.api.url,
            "ANTHROPIC_API_KEY": "sk-ant-e2e-not-a-real-key",
            "ANTHROPIC_CUSTOM_HEADERS": f"X-Test-Scenario: {scenario}",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_BUG_COMMAND": "1",
            "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
            "IS_SANDBOX": "1",
            # Stray egress goes to the fake server (recorded as role "egress"), never out.
            "HTTP_PROXY": self.api.url,
            "HTTPS_PROXY": self.api.url,
            "http_proxy": self.api.url,
            "https_proxy": self.api.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def run(
        self,
        p: Project,
        scenario: str,
        prompt: str,
        *flags: str,
        permission_mode: str = "bypassPermissions",
        model: str = MODEL,
    ) -> CliRun:
        """`claude -p PROMPT --output-format json` in the project dir; the parsed result."""
        command = [
            str(self.claude),
            "-p",
            prompt,
            "--output-format",
            "json",
            "--model",
            model,
            "--permission-mode",
            permission_mode,
            *flags,
        ]
        started = time.monotonic()
        proc = subprocess.run(
            command,
            cwd=p.dir,
            env=self.cli_env(p, scenario),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        seconds = time.monotonic() - started
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            pytest.fail(
                f"claude exited {proc.returncode} without a JSON result; stdout:\n"
                f"{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}"
            )
        run = CliRun(proc.returncode, result, proc.stderr, seconds)
        p.runs.append(run)
        return run

    # -- waiting for the daemon ---------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.env.db_url) as conn:
            return conn.execute(sql, params).fetchall()

    def hook_rows(self) -> int:
        return int(
            self.query("SELECT count(*) FROM agent_logs WHERE event_category = 'hook'")[0][0]
        )

    def _quarantined(self) -> list[str]:
        q = self.env.spool / "quarantine"
        return sorted(f.name for f in q.iterdir()) if q.exists() else []

    def stored_for(self, session_id: str, event_type: str, wait_s: float = 10.0) -> int:
        """Rows of `event_type` for the session once the spool is drained (waits up to wait_s)."""

        def count() -> int:
            ((n,),) = self.query(
                "SELECT count(*) FROM agent_logs WHERE claude_session_id = %s AND event_type = %s",
                session_id,
                event_type,
            )
            return int(n)

        deadline = time.monotonic() + wait_s
        while count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        return count()

    def settle(self, p: Project, session_id: str) -> None:
        """Wait until every captured event is a row and every transcript byte has been read."""
        expected = p.fired().total()
        try:
            wait_for(lambda: self.hook_rows() >= expected, WAIT_S, f"{expected} hook rows")
        except AssertionError:
            stored = Counter(
                dict(
                    self.query(
                        "SELECT event_type, count(*) FROM agent_logs WHERE event_category = 'hook'"
                        " GROUP BY 1"
                    )
                )
            )
            raise AssertionError(
                f"{self.hook_rows()} of {expected} events ingested (fired, not stored: "
                f"{dict(p.fired() - stored)}); quarantined: "
                f"{self._quarantined()}; daemon log tail:\n{self.daemon_log()[-3000:]}"
            ) from None
        files = p.transcripts(session_id)
        assert files, f"no transcript for {session_id} under {p.home}"

        def read_to_end() -> bool:
            offsets = dict(
                self.query(
                    "SELECT path, byte_offset FROM transcript_files WHERE path = ANY(%s)",
                    [str(f) for f in files],
                )
            )
            return all(offsets.get(str(f)) == f.stat().st_size for f in files)

        wait_for(read_to_end, WAIT_S, f"daemon to read {[f.name for f in files]} to the end")

    def link_workflow(self, p: Project, slug: str, session_id: str, claimed: float) -> str:
        """Write agents/sessions/<slug>/state.json naming the session; its sessions.id once linked."""
        folder = p.dir / "agents" / "sessions" / slug
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "slug": slug,
            "title": f"e2e {slug}",
            "status": "complete",
            "session_type": "quick",
            "working_dir": str(p.dir),
            "total_cost": claimed,
            "agents": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"e2e:{slug}")),
                    "agent_type": "builder",
                    "sdk_session_id": session_id,
                    "model": MODEL,
                    "model_alias": "sonnet",
                    "status": "complete",
                }
            ],
        }
        tmp = folder / ".state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(folder / "state.json")

        def linked() -> str | None:
            rows = self.query(
                "SELECT s.id::text FROM sessions s JOIN agents a ON a.session_id = s.id"
                " WHERE s.slug = %s AND a.sdk_session_id = %s AND a.claude_agent_id IS NULL",
                slug,
                session_id,
            )
            if not rows:
                return None
            unlinked = self.query(
                "SELECT count(*) FROM agent_logs WHERE claude_session_id = %s"
                " AND session_id IS DISTINCT FROM %s::uuid",
                session_id,
                rows[0][0],
            )[0][0]
            return str(rows[0][0]) if unlinked == 0 else None

        return str(wait_for(linked, WAIT_S, f"workflow {slug} linked to {session_id}"))

    def daemon_log(self) -> str:
        log = self.tmp_path / "daemon.log"
        return log.read_text(errors="replace") if log.exists() else ""

    # -- what the fake API answered ------------------------------------------------------------

    def answered(self, scenario: str, role: str | None = None) -> list[Record]:
        """Successful responses of a scenario (optionally one role), in arrival order."""
        return [
            r
            for r in self.api.records(scenario)
            if r.usage is not None and (role is None or r.role == role)
        ]

    def usage(self, scenario: str, role: str | None = None) -> Usage:
        return total(r.usage for r in self.answered(scenario, role) if r.usage is not None)


def capture_hooks(command: Path, events: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Settings `hooks` running the capture hook for every event (tool events match "*")."""
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        handler = {
            "type": "command",
            "command": f"{shlex.quote(str(command))} {event}",
            "timeout": 10,
        }
        out[event] = [
            {"matcher": "*", "hooks": [handler]} if event in TOOL_EVENTS else {"hooks": [handler]}
        ]
    return out


def session_db_cli() -> str:
    """The installed `session-db` console script next to this interpreter."""
    script = Path(sys.executable).with_name("session-db")
    assert script.exists(), f"{script} missing: install the package (pip install -e .)"
    return str(script)


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropicAPI]:
    api = FakeAnthropicAPI()
    try:
        yield api
    finally:
        api.close()


def _running_lab(
    tmp_path: Path, db_url: str, claude: ClaudeCode, api: FakeAnthropicAPI
) -> Iterator[Lab]:
    lab = Lab(tmp_path, db_url, claude, api)
    lab.start_daemon()
    try:
        yield lab
    finally:
        if lab.daemon is not None:
            with contextlib.suppress(Exception):
                lab.daemon.stop(10)
            if lab.daemon.proc.poll() is None:
                lab.daemon.kill()


@pytest.fixture
def lab(
    tmp_path: Path, db_url: str, claude_code: ClaudeCode, fake_api: FakeAnthropicAPI
) -> Iterator[Lab]:
    """A running daemon on a fresh database, the fake API and each pinned CLI in turn."""
    yield from _running_lab(tmp_path, db_url, claude_code, fake_api)


@pytest.fixture
def newest_lab(
    tmp_path: Path, db_url: str, newest_claude_code: ClaudeCode, fake_api: FakeAnthropicAPI
) -> Iterator[Lab]:
    """The same world with only the newest pinned CLI."""
    yield from _running_lab(tmp_path, db_url, newest_claude_code, fake_api)
