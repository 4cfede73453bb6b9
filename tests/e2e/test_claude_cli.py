"""The real Claude Code CLI, our hook and the daemon, end to end (issue "End to end with the real
Claude Code CLI, in CI").

Each test scripts the fake API, runs `claude -p` in a fresh project with a private HOME, waits
until the daemon has every captured event and every transcript byte, links the session to a
workflow through state.json, and checks the stored rows against three independent truths: the
capture hook (what Claude Code fired), the fake API (what usage it was told) and the CLI's own
result JSON (what it thinks the session cost).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest

from tests.e2e.conftest import TEST_TIMEOUT_S, CliRun, Lab, Project
from tests.e2e.fake_api import (
    MODEL,
    Failure,
    Reply,
    Step,
    Text,
    Thinking,
    ToolUse,
    Usage,
    total,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(TEST_TIMEOUT_S)]

TOLERANCE = Decimal("0.000001")


def usage(scenario: int, step: int, *, sub: bool = False, cache_1h: int = 0) -> Usage:
    """Distinctive token counts: scenario, step and role can be read off every number."""
    base = scenario * 1000 + step * 100 + (50 if sub else 0)
    return Usage(
        input_tokens=base + 1,
        cache_write_5m=base + 2,
        cache_write_1h=cache_1h,
        cache_read=base + 3,
        output_tokens=scenario * 10 + step + (5 if sub else 0),
    )


def bash(tool_id: str, command: str) -> ToolUse:
    return ToolUse(tool_id, "Bash", {"command": command, "description": f"Run {command}"})


# ---------------------------------------------------------------------------------------------
# Shared checks


def scripted(
    lab: Lab, scenario: str, steps: Mapping[str, Sequence[Step]]
) -> Mapping[str, Sequence[Step]]:
    lab.api.script(scenario, steps)
    return steps


def assert_api_followed_script(
    lab: Lab, scenario: str, steps: Mapping[str, Sequence[Step]]
) -> None:
    """Every scripted reply was asked for, nothing else was, and nothing tried to leave the box."""
    records = lab.api.records(scenario)
    assert [] == [r for r in lab.api.records() if r.role in ("egress", "other") or r.unscripted]
    assert {MODEL} == {r.model for r in records}
    expected = {role: sum(isinstance(s, Reply) for s in s_) for role, s_ in steps.items()}
    actual = {role: len(lab.answered(scenario, role)) for role in steps}
    assert expected == actual, [(r.role, r.status) for r in records]


def assert_events_match_capture(lab: Lab, p: Project, session_id: str) -> None:
    """agent_logs has one hook row per firing the capture hook saw, by type and by subagent.

    Only this project's rows count (by the CLAUDE_PROJECT_DIR the hook recorded): a test that
    retries the CLI runs each attempt in a project of its own against the same database.
    """
    rows = lab.query(
        "SELECT event_type, claude_agent_id, claude_session_id FROM agent_logs"
        " WHERE event_category = 'hook' AND project_dir = ANY(%s)",
        sorted({str(p.dir), str(p.dir.resolve())}),
    )
    assert p.fired() == Counter(r[0] for r in rows)
    assert Counter((e["hook_event_name"], e.get("agent_id")) for e in p.payloads()) == Counter(
        (r[0], r[1]) for r in rows
    )
    assert {session_id} == {r[2] for r in rows}


def agent_rows(lab: Lab, session_id: str) -> dict[str | None, tuple[str, str | None]]:
    """claude_agent_id (None for the main session) -> (agents.id, parent_agent_id)."""
    rows = lab.query(
        "SELECT claude_agent_id, id::text, parent_agent_id::text FROM agents WHERE sdk_session_id = %s",
        session_id,
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def assert_agents(lab: Lab, p: Project, session_id: str) -> None:
    """One agents row for the session and one child per subagent, whose parent is the session's."""
    agents = agent_rows(lab, session_id)
    subagents = {e["agent_id"] for e in p.payloads("SubagentStart")}
    assert {None} | subagents == set(agents)
    main_id, main_parent = agents[None]
    assert main_parent is None
    assert dict.fromkeys(subagents, main_id) == {a: agents[a][1] for a in subagents}


ARCHIVED_TYPES = ("user", "assistant", "system", "attachment")  # daemon/messages.py ROLES


def assert_messages(lab: Lab, p: Project, session_id: str) -> None:
    """The conversation archive: each transcript entry of a conversation type (every user
    prompt, every assistant text or thinking block…) is exactly one messages row, with the
    transcript's parent uuid and the agents row of its (sub)agent; a resumed session's copies
    add none."""
    entries = [
        json.loads(line)
        for path in p.transcripts(session_id)
        for line in path.read_bytes().splitlines()
    ]
    want = {
        e["uuid"]: (e.get("parentUuid"), e.get("agentId"), e["type"])
        for e in entries
        if "uuid" in e and e.get("type") in ARCHIVED_TYPES
    }
    rows = lab.query(
        "SELECT m.uuid, m.parent_uuid, a.claude_agent_id, m.role FROM messages m"
        " JOIN agents a ON a.id = m.agent_id WHERE m.claude_session_id = %s",
        session_id,
    )
    assert len(rows) == len({r[0] for r in rows})
    assert want == {r[0]: tuple(r[1:]) for r in rows}
    prompts = [
        e
        for e in entries
        if e.get("type") == "user" and isinstance(e["message"].get("content"), str)
    ]
    assert prompts, "every scenario sends a prompt"


def assert_tool_calls(lab: Lab, p: Project, session_id: str, outcomes: Mapping[str, str]) -> None:
    """tool_calls has the expected outcome per call, and duration_ms is the Post payload's."""
    rows = lab.query(
        "SELECT tool_use_id, outcome, duration_ms, duration_source FROM tool_calls"
        " WHERE claude_session_id = %s",
        session_id,
    )
    assert dict(outcomes) == {r[0]: r[1] for r in rows}
    posts = p.payloads("PostToolUse") + p.payloads("PostToolUseFailure")
    assert {e["tool_use_id"]: (Decimal(e["duration_ms"]), "hook") for e in posts} == {
        r[0]: (Decimal(r[2]), r[3]) for r in rows if r[0] in {e["tool_use_id"] for e in posts}
    }


def session_costs(lab: Lab, session_id: str) -> dict[str, Any]:
    cols = [
        "cost_usd",
        "cli_cost_usd",
        "responses",
        "subagents",
        "input_tokens",
        "cache_write_5m_tokens",
        "cache_write_1h_tokens",
        "cache_read_tokens",
        "output_tokens",
    ]
    rows = lab.query(
        f"SELECT {', '.join(cols)} FROM claude_session_costs WHERE claude_session_id = %s",  # noqa: S608
        session_id,
    )
    assert 1 == len(rows)
    return dict(zip(cols, rows[0], strict=True))


def tokens(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens,
        "cache_write_5m_tokens": u.cache_write_5m,
        "cache_write_1h_tokens": u.cache_write_1h,
        "cache_read_tokens": u.cache_read,
        "output_tokens": u.output_tokens,
    }


def assert_costs(lab: Lab, session_id: str, scenarios: Sequence[str], run: CliRun) -> Decimal:
    """Token totals equal the fake API's answers; cost and the stored cost-state figure equal the
    CLI's total_cost_usd (1e-6); cost_check has no row for the session."""
    answered = [r for s in scenarios for r in lab.answered(s)]
    told = total(lab.usage(s) for s in scenarios)
    costs = session_costs(lab, session_id)
    assert {**tokens(told), "responses": len(answered)} == {
        k: costs[k] for k in [*tokens(told), "responses"]
    }
    cli_total = Decimal(str(run.result["total_cost_usd"]))
    assert abs(cli_total - told.cost_usd()) < TOLERANCE, "the CLI prices the fake usage at list"
    assert costs["cost_usd"] is not None
    assert abs(cli_total - costs["cost_usd"]) < TOLERANCE, (cli_total, costs["cost_usd"])
    # The self-check: Claude Code's own figure (its cost-state lines) was read, and agrees.
    assert costs["cli_cost_usd"] is not None, "no cost-state line read"
    assert abs(cli_total - costs["cli_cost_usd"]) < TOLERANCE, (cli_total, costs["cli_cost_usd"])
    assert [] == lab.query("SELECT * FROM cost_check WHERE claude_session_id = %s", session_id)
    return Decimal(costs["cost_usd"])


def assert_workflow(lab: Lab, p: Project, session_id: str, run: CliRun, cost: Decimal) -> None:
    """A state.json naming the session links all its agents and events and carries its cost."""
    sid = lab.link_workflow(p, f"e2e-{p.name}", session_id, run.result["total_cost_usd"])
    linked = lab.query(
        "SELECT claude_agent_id, session_id::text FROM agents WHERE sdk_session_id = %s", session_id
    )
    assert {r[0]: sid for r in linked} == dict(linked)
    assert [(0,)] == lab.query(
        "SELECT count(*) FROM agent_logs WHERE claude_session_id = %s AND session_id IS DISTINCT FROM %s::uuid",
        session_id,
        sid,
    )
    [(workflow_cost,)] = lab.query(
        "SELECT cost_usd FROM session_costs WHERE session_id = %s::uuid", sid
    )
    assert cost == workflow_cost


def check_session(
    lab: Lab,
    p: Project,
    run: CliRun,
    *,
    scenario: str,
    steps: Mapping[str, Sequence[Step]],
    outcomes: Mapping[str, str],
) -> None:
    """All shared invariants of one single-run scenario."""
    session_id = run.session_id
    lab.settle(p, session_id)
    assert_api_followed_script(lab, scenario, steps)
    assert_events_match_capture(lab, p, session_id)
    assert_agents(lab, p, session_id)
    assert_messages(lab, p, session_id)
    assert_tool_calls(lab, p, session_id, outcomes)
    cost = assert_costs(lab, session_id, [scenario], run)
    assert_workflow(lab, p, session_id, run, cost)


# ---------------------------------------------------------------------------------------------
# Scenarios


def test_bash_and_write_are_recorded_exactly(lab: Lab) -> None:
    """Bash then Write: every event, both calls ok with the hook's duration, tokens and cost exact."""
    p = lab.project("tools")
    note = p.dir / "e2e_note.txt"
    steps = scripted(
        lab,
        "tools",
        {
            "main": [
                Reply(
                    (
                        Thinking("The script says: echo first."),
                        Text("Running echo."),
                        bash("toolu_e2e_tools_bash", "echo e2e-tools"),
                    ),
                    usage(1, 1),
                ),
                Reply(
                    (
                        Text("Writing the note."),
                        ToolUse(
                            "toolu_e2e_tools_write",
                            "Write",
                            {"file_path": str(note), "content": "e2e\n"},
                        ),
                    ),
                    usage(1, 2, cache_1h=64),
                ),
                Reply((Text("Done: echoed and wrote the note."),), usage(1, 3)),
            ]
        },
    )
    run = lab.run(p, "tools", "E2E-TOOLS: echo, then write a note")
    assert (0, False) == (run.returncode, run.result["is_error"]), run.stderr
    assert "e2e\n" == note.read_text()
    check_session(
        lab,
        p,
        run,
        scenario="tools",
        steps=steps,
        outcomes={"toolu_e2e_tools_bash": "ok", "toolu_e2e_tools_write": "ok"},
    )


def test_parallel_tool_calls_are_two_calls_in_one_batch(lab: Lab) -> None:
    """Two tool_use blocks in one response: two ok calls, one PostToolBatch naming both."""
    p = lab.project("parallel")
    (p.dir / "input.txt").write_text("parallel input\n")
    steps = scripted(
        lab,
        "parallel",
        {
            "main": [
                Reply(
                    (
                        ToolUse(
                            "toolu_e2e_par_read", "Read", {"file_path": str(p.dir / "input.txt")}
                        ),
                        bash("toolu_e2e_par_bash", "echo e2e-parallel"),
                    ),
                    usage(2, 1),
                ),
                Reply((Text("Read and echoed in parallel."),), usage(2, 2)),
            ]
        },
    )
    run = lab.run(p, "parallel", "E2E-PARALLEL: read and echo at once")
    assert (0, False) == (run.returncode, run.result["is_error"]), run.stderr
    check_session(
        lab,
        p,
        run,
        scenario="parallel",
        steps=steps,
        outcomes={"toolu_e2e_par_read": "ok", "toolu_e2e_par_bash": "ok"},
    )
    batches = lab.query(
        "SELECT payload FROM agent_logs WHERE event_type = 'PostToolBatch' AND claude_session_id = %s",
        run.session_id,
    )
    assert [{"toolu_e2e_par_read", "toolu_e2e_par_bash"}] == [
        {c["tool_use_id"] for c in b[0]["tool_calls"]} for b in batches
    ]


def test_failing_command_is_a_failed_call(lab: Lab) -> None:
    """A command exiting 2 fires PostToolUseFailure and is a failed call with the hook's duration."""
    p = lab.project("failure")
    steps = scripted(
        lab,
        "failure",
        {
            "main": [
                Reply((bash("toolu_e2e_fail_bash", "ls /nonexistent-e2e-path"),), usage(3, 1)),
                Reply((Text("The listing failed, as expected."),), usage(3, 2)),
            ]
        },
    )
    run = lab.run(p, "failure", "E2E-FAILURE: list a missing directory")
    assert (0, False) == (run.returncode, run.result["is_error"]), run.stderr
    check_session(
        lab, p, run, scenario="failure", steps=steps, outcomes={"toolu_e2e_fail_bash": "failed"}
    )
    [failure] = p.payloads("PostToolUseFailure")
    assert failure["error"].startswith("Exit code 2"), failure["error"]


def test_foreground_subagent_is_a_child_agent_with_its_own_tokens(lab: Lab) -> None:
    """A foreground Agent call: a child agents row, its Bash call and its tokens attributed to it."""
    p = lab.project("subagent")
    steps = scripted(
        lab,
        "subagent",
        {
            "main": [
                Reply(
                    (
                        Text("Delegating."),
                        ToolUse(
                            "toolu_e2e_sub_agent",
                            "Agent",
                            {
                                "description": "Echo subagent",
                                "prompt": "E2E-SUBAGENT-TASK: run `echo from-subagent`, then say hi.",
                                "subagent_type": "general-purpose",
                                "run_in_background": False,
                            },
                        ),
                    ),
                    usage(4, 1),
                ),
                Reply((Text("The subagent said hi."),), usage(4, 2)),
            ],
            "sub": [
                Reply((bash("toolu_e2e_sub_bash", "echo from-subagent"),), usage(4, 1, sub=True)),
                Reply((Text("Hi from the subagent!"),), usage(4, 2, sub=True)),
            ],
        },
    )
    run = lab.run(p, "subagent", "E2E-SUBAGENT: delegate an echo")
    assert (0, False) == (run.returncode, run.result["is_error"]), run.stderr
    check_session(
        lab,
        p,
        run,
        scenario="subagent",
        steps=steps,
        outcomes={"toolu_e2e_sub_agent": "ok", "toolu_e2e_sub_bash": "ok"},
    )
    [start] = p.payloads("SubagentStart")
    agents = agent_rows(lab, run.session_id)
    child_id, main_id = agents[start["agent_id"]][0], agents[None][0]
    calls = {
        r[0]: (r[1], r[2])
        for r in lab.query(
            "SELECT tool_use_id, agent_id::text, claude_agent_id FROM tool_calls WHERE claude_session_id = %s",
            run.session_id,
        )
    }
    assert {
        "toolu_e2e_sub_agent": (main_id, None),
        "toolu_e2e_sub_bash": (child_id, start["agent_id"]),
    } == calls
    per_agent = {
        r[0]: dict(
            zip(
                (
                    "input_tokens",
                    "cache_write_5m_tokens",
                    "cache_write_1h_tokens",
                    "cache_read_tokens",
                    "output_tokens",
                ),
                r[1:],
                strict=True,
            )
        )
        for r in lab.query(
            "SELECT claude_agent_id, input_tokens, cache_write_5m_tokens, cache_write_1h_tokens,"
            " cache_read_tokens, output_tokens FROM agent_costs WHERE claude_session_id = %s",
            run.session_id,
        )
    }
    assert {
        None: tokens(lab.usage("subagent", "main")),
        start["agent_id"]: tokens(lab.usage("subagent", "sub")),
    } == per_agent
    assert 1 == session_costs(lab, run.session_id)["subagents"]


def test_permission_denial_is_a_denied_call(lab: Lab) -> None:
    """--permission-mode default without Write allowed: the Write is denied, has no Post event."""
    p = lab.project("denied")
    steps = scripted(
        lab,
        "denied",
        {
            "main": [
                Reply((bash("toolu_e2e_deny_bash", "echo allowed"),), usage(5, 1)),
                Reply(
                    (
                        ToolUse(
                            "toolu_e2e_deny_write",
                            "Write",
                            {"file_path": str(p.dir / "denied.txt"), "content": "no\n"},
                        ),
                    ),
                    usage(5, 2),
                ),
                Reply((Text("Writing was not allowed."),), usage(5, 3)),
            ]
        },
    )
    run = lab.run(
        p,
        "denied",
        "E2E-DENIED: echo, then try to write",
        "--allowedTools",
        "Bash(echo:*)",
        permission_mode="default",
    )
    assert (0, False) == (run.returncode, run.result["is_error"]), run.stderr
    assert ["toolu_e2e_deny_write"] == [d["tool_use_id"] for d in run.result["permission_denials"]]
    assert not (p.dir / "denied.txt").exists()
    check_session(
        lab,
        p,
        run,
        scenario="denied",
        steps=steps,
        outcomes={"toolu_e2e_deny_bash": "ok", "toolu_e2e_deny_write": "denied"},
    )
    posts = {e["tool_use_id"] for e in p.payloads("PostToolUse") + p.payloads("PostToolUseFailure")}
    assert {"toolu_e2e_deny_bash"} == posts


# The CLI exits (status 1) right after an API error, and under load it was seen to exit before
# its StopFailure hooks ran (0 firings, even of the capture hook) or while they ran (the capture
# hook finished, ours was cut off before its rename, so the event was never accepted). Either is
# Claude Code's exit, not session-db: the scenario is repeated in a fresh project until the CLI
# delivered StopFailure to both hooks, and only that run is checked.
API_ERROR_ATTEMPTS = 3


def test_api_error_is_a_stop_failure_costing_nothing(lab: Lab) -> None:
    """HTTP 400 on every attempt: StopFailure, is_error, a stop_failure turn and a zero cost."""
    for attempt in range(1, API_ERROR_ATTEMPTS + 1):
        scenario = f"api-error-{attempt}"
        p = lab.project(scenario)
        steps = scripted(
            lab,
            scenario,
            {"main": [Failure(400, "invalid_request_error", "e2e harness: forced API error")]},
        )
        run = lab.run(p, scenario, "E2E-API-ERROR: this request fails")
        assert (1, True, 400) == (
            run.returncode,
            run.result["is_error"],
            run.result["api_error_status"],
        ), run.stderr
        if p.fired()["StopFailure"] == 1 and lab.stored_for(run.session_id, "StopFailure") == 1:
            break
        print(f"attempt {attempt}: the CLI exited before StopFailure reached both hooks")
    else:
        pytest.fail(f"in {API_ERROR_ATTEMPTS} runs the CLI never delivered StopFailure to both hooks")
    records = lab.api.records(scenario)
    assert records
    assert {("main", 400)} == {(r.role, r.status) for r in records}
    check_session(lab, p, run, scenario=scenario, steps=steps, outcomes={})
    assert [("stop_failure",)] == lab.query(
        "SELECT outcome FROM turns WHERE claude_session_id = %s", run.session_id
    )


def test_resume_adds_a_turn_and_the_cli_total_is_cumulative(lab: Lab) -> None:
    """--resume: same session, one more turn; the CLI's total is run 1's total plus run 2's cost."""
    p = lab.project("resume")
    first_steps = scripted(
        lab,
        "resume-1",
        {
            "main": [
                Reply((Text("Echoing."), bash("toolu_e2e_res1_bash", "echo first")), usage(7, 1)),
                Reply((Text("First turn done."),), usage(7, 2)),
            ]
        },
    )
    second_steps = scripted(
        lab,
        "resume-2",
        {
            "main": [
                Reply((bash("toolu_e2e_res2_bash", "echo second"),), usage(7, 3, cache_1h=32)),
                Reply((Text("Second turn done."),), usage(7, 4)),
            ]
        },
    )
    first = lab.run(p, "resume-1", "E2E-RESUME: first turn")
    assert (0, False) == (first.returncode, first.result["is_error"]), first.stderr
    session_id = first.session_id
    lab.settle(p, session_id)
    first_cost = assert_costs(lab, session_id, ["resume-1"], first)
    # Link the workflow between the runs: the resumed run's events must be linked on arrival.
    workflow = lab.link_workflow(p, "e2e-resume", session_id, first.result["total_cost_usd"])

    second = lab.run(p, "resume-2", "E2E-RESUME: one more turn", "--resume", session_id)
    assert (0, False, session_id) == (
        second.returncode,
        second.result["is_error"],
        second.session_id,
    ), second.stderr
    lab.settle(p, session_id)
    assert_api_followed_script(lab, "resume-1", first_steps)
    assert_api_followed_script(lab, "resume-2", second_steps)
    assert ["startup", "resume"] == [e["source"] for e in p.payloads("SessionStart")]
    assert_events_match_capture(lab, p, session_id)
    assert_agents(lab, p, session_id)
    assert_messages(lab, p, session_id)
    assert_tool_calls(
        lab, p, session_id, {"toolu_e2e_res1_bash": "ok", "toolu_e2e_res2_bash": "ok"}
    )

    # Documented relation: after --resume the CLI reports the session's cumulative cost.
    second_only = lab.usage("resume-2").cost_usd()
    cli_first = Decimal(str(first.result["total_cost_usd"]))
    cli_second = Decimal(str(second.result["total_cost_usd"]))
    assert abs(cli_first + second_only - cli_second) < TOLERANCE, (
        cli_first,
        second_only,
        cli_second,
    )
    cost = assert_costs(lab, session_id, ["resume-1", "resume-2"], second)
    assert abs(cost - first_cost - second_only) < TOLERANCE

    turns = lab.query(
        "SELECT outcome, cost_usd FROM turns WHERE claude_session_id = %s ORDER BY started_at",
        session_id,
    )
    assert [("stop", first_cost), ("stop", second_only)] == [(o, Decimal(c)) for o, c in turns]
    assert [(0,)] == lab.query(
        "SELECT count(*) FROM agent_logs WHERE claude_session_id = %s AND session_id IS DISTINCT FROM %s::uuid",
        session_id,
        workflow,
    )
    [(workflow_cost,)] = lab.query(
        "SELECT cost_usd FROM session_costs WHERE session_id = %s::uuid", workflow
    )
    assert cost == workflow_cost
