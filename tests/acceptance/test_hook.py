"""The spool hook, run for real under /bin/sh and under bash, fed real Claude Code payloads."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "hooks" / "session-db-hook"
FIXTURE_HOOKS = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks"
REPRESENTATIVE = sorted(FIXTURE_HOOKS.glob("*.json"))
SCENARIOS = sorted(p for p in (FIXTURE_HOOKS / "all").iterdir() if p.is_dir())

# /bin/sh is dash on Debian/Ubuntu; bash takes the $EPOCHREALTIME/$SRANDOM fast path.
_bash = shutil.which("bash")
INTERPRETERS = ["/bin/sh", *([_bash] if _bash else [])]

NAME_RE = re.compile(
    r"^(?P<ns>[0-9]+)\.P(?P<pid>[0-9]+)R(?P<rand>[0-9A-Za-z]{16})\.(?P<host>[^/:]+)$"
)
ALLOWED_ENV = (
    "CLAUDE_PROJECT_DIR",
    "CLAUDE_CODE_SESSION_ID",
    "SESSION_DB_SESSION",
    "SESSION_DB_AGENT_TYPE",
)


@dataclass
class SpoolFile:
    """One parsed spool file."""

    name: str
    header: dict[str, str]
    header_order: list[str]
    payload: bytes


def parse_spool_file(path: Path) -> SpoolFile:
    """Split a spool file into its header (as the format defines it) and payload."""
    data = path.read_bytes()
    head, sep, payload = data.partition(b"\n\n")
    assert b"\n\n" == sep, f"no header terminator in {path.name}"
    header: dict[str, str] = {}
    order: list[str] = []
    for line in head.split(b"\n"):
        key, colon, value = line.partition(b": ")
        assert b": " == colon, f"bad header line {line!r}"
        header[key.decode("ascii")] = value.decode()
        order.append(key.decode("ascii"))
    return SpoolFile(path.name, header, order, payload)


def expected_host() -> str:
    """The host field the hook must write: the kernel host name with '/' and ':' replaced."""
    proc_host = Path("/proc/sys/kernel/hostname")
    host = proc_host.read_text().strip() if proc_host.exists() else socket.gethostname()
    return host.replace("/", "_").replace(":", "_")


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: PATH and a private HOME, plus `extra`."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **extra}


def run_hook(
    interp: str,
    args: list[str],
    stdin: bytes,
    env: dict[str, str],
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the hook script under `interp` with `args`, feeding `stdin`."""
    return subprocess.run(
        [*(prefix or []), interp, str(HOOK), *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )


def only_file(spool: Path) -> Path:
    """The single file in spool/new (and assert that tmp/ is empty)."""
    files = sorted((spool / "new").iterdir())
    assert 1 == len(files), files
    assert [] == sorted((spool / "tmp").iterdir())
    return files[0]


@pytest.fixture(params=INTERPRETERS)
def interp(request: pytest.FixtureRequest) -> str:
    """Each shell the hook must work under."""
    return str(request.param)


def test_hook_script_is_executable_posix_sh() -> None:
    """The packaged hook is mode 0755, starts with #!/bin/sh and parses under sh and bash."""
    assert 0o755 == stat.S_IMODE(HOOK.stat().st_mode)
    assert b"#!/bin/sh\n" == HOOK.read_bytes()[:10]
    for shell in INTERPRETERS:
        assert 0 == subprocess.run([shell, "-n", str(HOOK)], check=False).returncode


@pytest.mark.parametrize("payload_file", REPRESENTATIVE, ids=lambda p: p.stem)
def test_hook_fixture_payload_lands_in_new_unchanged(
    interp: str, payload_file: Path, tmp_path: Path
) -> None:
    """Each real payload becomes one file in new/ with the payload bytes unchanged."""
    spool = tmp_path / "spool"
    event = payload_file.stem.split("__")[0]
    payload = payload_file.read_bytes()

    result = run_hook(interp, ["--spool", str(spool), event], payload, base_env(tmp_path))

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    parsed = parse_spool_file(only_file(spool))
    assert payload == parsed.payload
    assert event == parsed.header["event"]


def test_hook_replays_every_scenario_payload(interp: str, tmp_path: Path) -> None:
    """Every payload of every recorded scenario is spooled once, byte for byte."""
    spool = tmp_path / "spool"
    sent: dict[bytes, int] = {}
    for scenario in SCENARIOS:
        for payload_file in sorted(scenario.glob("*.json")):
            payload = payload_file.read_bytes()
            event = payload_file.stem.split("_", 1)[1]
            result = run_hook(interp, ["--spool", str(spool), event], payload, base_env(tmp_path))
            assert (0, b"") == (result.returncode, result.stdout)
            sent[payload] = sent.get(payload, 0) + 1

    got: dict[bytes, int] = {}
    for path in (spool / "new").iterdir():
        payload = parse_spool_file(path).payload
        got[payload] = got.get(payload, 0) + 1
    assert sent == got
    assert [] == list((spool / "tmp").iterdir())


def test_hook_header_fields_parse(interp: str, tmp_path: Path) -> None:
    """The header carries version 1, a current received-ns, the host and the event, in order."""
    spool = tmp_path / "spool"
    before = time.time_ns()
    result = run_hook(interp, ["--spool", str(spool), "Stop"], b"{}", base_env(tmp_path))
    after = time.time_ns()

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    parsed = parse_spool_file(only_file(spool))
    assert ["session-db-spool", "received-ns", "host", "event"] == parsed.header_order
    assert "1" == parsed.header["session-db-spool"]
    # Both clock sources have at least microsecond resolution on Linux.
    assert before // 1000 * 1000 <= int(parsed.header["received-ns"]) <= after
    assert expected_host() == parsed.header["host"]
    assert "Stop" == parsed.header["event"]


def test_hook_file_name_is_unique_form(interp: str, tmp_path: Path) -> None:
    """The name is <time_ns>.P<pid>R<16 alphanumerics>.<host> and matches the header."""
    spool = tmp_path / "spool"
    run_hook(interp, ["--spool", str(spool), "Stop"], b"{}", base_env(tmp_path))

    path = only_file(spool)
    match = NAME_RE.match(path.name)
    assert match is not None, path.name
    parsed = parse_spool_file(path)
    assert parsed.header["received-ns"] == match["ns"]
    assert parsed.header["host"] == match["host"]


def test_hook_modes_are_private_under_open_umask(interp: str, tmp_path: Path) -> None:
    """Created directories are 0700 and the spool file 0600, whatever the caller's umask."""
    spool = tmp_path / "a" / "spool"
    umask0 = ["/bin/sh", "-c", 'umask 000; exec "$@"', "sh"]
    run_hook(interp, ["--spool", str(spool), "Stop"], b"{}", base_env(tmp_path), prefix=umask0)

    path = only_file(spool)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    for directory in (spool / "new", spool / "tmp", spool, tmp_path / "a"):
        assert 0o700 == stat.S_IMODE(directory.stat().st_mode), directory


def test_hook_empty_stdin_is_an_event(interp: str, tmp_path: Path) -> None:
    """An empty stdin still yields a file: the header with the event name and no payload."""
    spool = tmp_path / "spool"
    result = run_hook(interp, ["--spool", str(spool), "StopFailure"], b"", base_env(tmp_path))

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    parsed = parse_spool_file(only_file(spool))
    assert b"" == parsed.payload
    assert "StopFailure" == parsed.header["event"]


def test_hook_without_event_argument_omits_event_line(interp: str, tmp_path: Path) -> None:
    """With no event argument the header has no event line; the payload is still stored."""
    spool = tmp_path / "spool"
    payload = (FIXTURE_HOOKS / "Stop.json").read_bytes()
    result = run_hook(interp, ["--spool", str(spool)], payload, base_env(tmp_path))

    assert (0, b"") == (result.returncode, result.stdout)
    parsed = parse_spool_file(only_file(spool))
    assert ["session-db-spool", "received-ns", "host"] == parsed.header_order
    assert payload == parsed.payload


def test_hook_large_payload_is_byte_identical(interp: str, tmp_path: Path) -> None:
    """A 1 MB payload with every byte value, NUL included, is stored unchanged."""
    spool = tmp_path / "spool"
    payload = bytes(range(256)) * 4096
    result = run_hook(interp, ["--spool", str(spool), "PostToolUse"], payload, base_env(tmp_path))

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    assert payload == parse_spool_file(only_file(spool)).payload


def test_hook_copies_only_allow_listed_environment(interp: str, tmp_path: Path) -> None:
    """Only the four allow-listed variables reach the file; secrets never do."""
    spool = tmp_path / "spool"
    secrets = {
        "ANTHROPIC_API_KEY": "secret-api-key",
        "CLAUDE_CODE_MESSAGING_TOKEN": "secret-token",
        "AWS_SECRET_ACCESS_KEY": "secret-aws",
    }
    env = base_env(
        tmp_path,
        **secrets,
        CLAUDE_PROJECT_DIR="/work/project dir",
        CLAUDE_CODE_SESSION_ID="05e00ce7-caef-4c5c-93ef-fa0df076b5b2",
        SESSION_DB_SESSION="slug-1",
        SESSION_DB_AGENT_TYPE="reviewer",
    )
    run_hook(interp, ["--spool", str(spool), "SessionStart"], b"{}", env)

    path = only_file(spool)
    parsed = parse_spool_file(path)
    assert {
        "env.CLAUDE_PROJECT_DIR": "/work/project dir",
        "env.CLAUDE_CODE_SESSION_ID": "05e00ce7-caef-4c5c-93ef-fa0df076b5b2",
        "env.SESSION_DB_SESSION": "slug-1",
        "env.SESSION_DB_AGENT_TYPE": "reviewer",
    } == {k: v for k, v in parsed.header.items() if k.startswith("env.")}
    assert [f"env.{k}" for k in ALLOWED_ENV] == parsed.header_order[4:]
    assert b"secret" not in path.read_bytes()


def test_hook_skips_empty_and_multiline_env_values(interp: str, tmp_path: Path) -> None:
    """An empty value or one with a newline is not written (it could forge header lines)."""
    spool = tmp_path / "spool"
    env = base_env(
        tmp_path,
        CLAUDE_PROJECT_DIR="",
        SESSION_DB_SESSION="a\nenv.SESSION_DB_AGENT_TYPE: forged",
        CLAUDE_CODE_SESSION_ID="sid",
    )
    run_hook(interp, ["--spool", str(spool), "Stop"], b"{}", env)

    parsed = parse_spool_file(only_file(spool))
    assert {"env.CLAUDE_CODE_SESSION_ID": "sid"} == {
        k: v for k, v in parsed.header.items() if k.startswith("env.")
    }


def test_hook_unwritable_spool_exits_zero_with_one_stderr_line(interp: str, tmp_path: Path) -> None:
    """A spool that cannot be created: exit 0, no stdout, one stderr line naming the path."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    spool = blocker / "spool"
    payload = (FIXTURE_HOOKS / "PreToolUse.json").read_bytes()

    result = run_hook(interp, ["--spool", str(spool), "PreToolUse"], payload, base_env(tmp_path))

    assert (0, b"") == (result.returncode, result.stdout)
    assert f"session-db-hook: cannot create spool directory: {spool}\n".encode() == result.stderr
    assert "not a directory" == blocker.read_text()


def test_hook_failure_drains_stdin(interp: str, tmp_path: Path) -> None:
    """On failure the hook still reads stdin to EOF, so Claude Code never sees a broken pipe."""
    spool = tmp_path / "a-file" / "spool"
    (tmp_path / "a-file").write_text("")
    err = tmp_path / "stderr"
    with err.open("wb") as err_fh:
        proc = subprocess.Popen(
            [interp, str(HOOK), "--spool", str(spool), "PostToolUse"],
            stdin=subprocess.PIPE,
            stdout=err_fh,
            stderr=err_fh,
            env=base_env(tmp_path),
        )
        assert proc.stdin is not None
        proc.stdin.write(b"x" * (4 * 2**20))  # far more than a pipe buffer
        proc.stdin.close()
        assert 0 == proc.wait(timeout=30)
    assert 1 == len(err.read_bytes().splitlines())


def test_hook_unusable_tmp_dir_reports_and_leaves_nothing(interp: str, tmp_path: Path) -> None:
    """If tmp/ refuses new files, the hook exits 0 with one stderr line and new/ stays empty."""
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    (spool / "tmp").symlink_to("/proc")  # even root cannot create files in /proc

    result = run_hook(interp, ["--spool", str(spool), "Stop"], b"{}", base_env(tmp_path))

    assert (0, b"") == (result.returncode, result.stdout)
    assert 1 == len(result.stderr.splitlines())
    assert result.stderr.startswith(
        f"session-db-hook: cannot create spool file: {spool}/tmp/".encode()
    )
    assert [] == list((spool / "new").iterdir())


def test_hook_failed_move_removes_tmp_file(interp: str, tmp_path: Path) -> None:
    """If the rename into new/ fails, the tmp/ file is removed and exit is still 0."""
    spool = tmp_path / "spool"
    (spool / "tmp").mkdir(parents=True)
    (spool / "new").symlink_to("/proc")  # a directory nobody can add files to

    result = run_hook(interp, ["--spool", str(spool), "Stop"], b"{}", base_env(tmp_path))

    assert (0, b"") == (result.returncode, result.stdout)
    assert 1 == len(result.stderr.splitlines())
    assert result.stderr.startswith(b"session-db-hook: cannot move spool file: ")
    assert [] == list((spool / "tmp").iterdir())


def test_hook_spool_from_environment_then_xdg_default(interp: str, tmp_path: Path) -> None:
    """--spool beats $SESSION_DB_SPOOL, which beats $XDG_STATE_HOME/session-db/spool, then HOME."""
    flag, env_spool, xdg = tmp_path / "flag", tmp_path / "env", tmp_path / "xdg"
    home_default = tmp_path / "home" / ".local" / "state" / "session-db" / "spool"

    run_hook(
        interp,
        ["--spool", str(flag), "A"],
        b"1",
        base_env(tmp_path, SESSION_DB_SPOOL=str(env_spool)),
    )
    run_hook(
        interp,
        ["B"],
        b"2",
        base_env(tmp_path, SESSION_DB_SPOOL=str(env_spool), XDG_STATE_HOME=str(xdg)),
    )
    run_hook(interp, ["C"], b"3", base_env(tmp_path, XDG_STATE_HOME=str(xdg)))
    run_hook(interp, ["D"], b"4", base_env(tmp_path))

    assert "A" == parse_spool_file(only_file(flag)).header["event"]
    assert "B" == parse_spool_file(only_file(env_spool)).header["event"]
    assert "C" == parse_spool_file(only_file(xdg / "session-db" / "spool")).header["event"]
    assert "D" == parse_spool_file(only_file(home_default)).header["event"]


@pytest.mark.parametrize(
    ("args", "env_policy"),
    [
        (["--fsync", "full"], None),
        (["--fsync", "file"], None),
        (["--fsync=none"], None),
        ([], "file"),
        (["--fsync", "bogus"], None),
    ],
)
def test_hook_every_fsync_policy_delivers(
    interp: str, tmp_path: Path, args: list[str], env_policy: str | None
) -> None:
    """Every fsync policy (flag or $SESSION_DB_FSYNC, unknown meaning full) delivers the file."""
    spool = tmp_path / "spool"
    extra = {"SESSION_DB_FSYNC": env_policy} if env_policy else {}
    result = run_hook(
        interp, [*args, f"--spool={spool}", "Stop"], b"{}", base_env(tmp_path, **extra)
    )

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    assert b"{}" == parse_spool_file(only_file(spool)).payload


def test_hook_ignores_exported_fast_path_variables(tmp_path: Path) -> None:
    """Constant SRANDOM/EPOCHREALTIME in the environment of /bin/sh do not fake the bash clock."""
    spool = tmp_path / "spool"
    env = base_env(tmp_path, SRANDOM="4", EPOCHREALTIME="1000000000.000001")
    before = time.time_ns()
    result = run_hook("/bin/sh", ["--spool", str(spool), "Stop"], b"{}", env)

    assert (0, b"", b"") == (result.returncode, result.stdout, result.stderr)
    assert before // 10**9 * 10**9 <= int(parse_spool_file(only_file(spool)).header["received-ns"])


def test_hook_200_concurrent_runs_make_200_files(interp: str, tmp_path: Path) -> None:
    """200 hooks started at once into a fresh spool give 200 distinct, complete files."""
    spool = tmp_path / "spool"
    env = base_env(tmp_path)
    procs = []
    for i in range(200):
        proc = subprocess.Popen(
            [interp, str(HOOK), "--spool", str(spool), "PreToolUse"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        procs.append((i, proc))
    results = [
        (i, *proc.communicate(f'{{"n": {i}}}'.encode(), timeout=60), proc.returncode)
        for i, proc in procs
    ]

    assert [(i, b"", b"", 0) for i in range(200)] == results
    files = list((spool / "new").iterdir())
    assert 200 == len({p.name for p in files})
    assert {f'{{"n": {i}}}'.encode() for i in range(200)} == {
        parse_spool_file(p).payload for p in files
    }
    assert [] == list((spool / "tmp").iterdir())
