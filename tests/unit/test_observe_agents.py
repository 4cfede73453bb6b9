"""daemon.agent_observations.observe_agents: one observation per (session, subagent) in a batch, real payloads."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from daemon.agent_observations import observe_agents
from daemon.events import Event, parse
from tests.support.spoolwriter import encode

REPO = Path(__file__).resolve().parents[2]
ALL = REPO / "tests" / "fixtures" / "claude-code-2.1.330" / "hooks" / "all"
BASE_NS = 1_795_436_016_000_000_000
STEP_NS = 1_000_000
HOST = "build-01"

MAIN_SID = "05e00ce7-caef-4c5c-93ef-fa0df076b5b2"
MAIN_SUB = "a4559b86e76dea3ec"
TUI_SID = "754e99ea-7fc4-4338-9331-feeacf5871ea"
TUI_SUB = "a9119ffa53d9c0fbe"
MODEL = "claude-sonnet-4-5-20250929"


def scenario(name: str, env: dict[str, str] | None = None) -> list[Event]:
    """The scenario's payloads as parsed events, received STEP_NS apart in firing order."""
    out = []
    for i, path in enumerate(sorted((ALL / name).glob("*.json"))):
        raw = path.read_bytes()
        event = json.loads(raw)["hook_event_name"]
        data = encode(raw, event=event, received_ns=BASE_NS + i * STEP_NS, host=HOST, env=env)
        out.append(parse(f"{name}-{i:02d}", data, default_host=HOST, mtime_ns=0))
    return out


def ns(i: int) -> int:
    return BASE_NS + i * STEP_NS


def by_key(events: list[Event]) -> dict[tuple[str, str | None], Any]:
    return {(o.sid, o.aid): o for o in observe_agents(events)}


def test_observe_agents_main_scenario_gives_main_and_child() -> None:
    """The main scenario (28 events) yields exactly one main and one subagent observation."""
    assert [(MAIN_SID, None), (MAIN_SID, MAIN_SUB)] == [
        (o.sid, o.aid) for o in observe_agents(scenario("main"))
    ]


def test_observe_agents_main_observation_fields() -> None:
    """The main agent spans SessionStart to SessionEnd and is complete."""
    main = next(o for o in observe_agents(scenario("main")) if o.aid is None)
    assert (ns(0), ns(27), True) == (main.first_ns, main.last_ns, main.last_is_end)
    assert (HOST, "/tmp/ccrun/work/main") == (main.host, main.cwd)
    assert main.agent_type is None
    assert main.model is None  # no payload of this scenario names a model
    assert main.slug is None


def test_observe_agents_child_observation_fields() -> None:
    """The subagent spans SubagentStart to SubagentStop, is complete and keeps its type."""
    child = next(o for o in observe_agents(scenario("main")) if o.aid == MAIN_SUB)
    # files 19_SubagentStart .. 23_SubagentStop are indexes 18 .. 22
    assert (ns(18), ns(22), True) == (child.first_ns, child.last_ns, child.last_is_end)
    assert "general-purpose" == child.agent_type
    assert "/tmp/ccrun/work/main" == child.cwd
    assert child.model is None
    assert child.slug is None


def test_observe_agents_last_is_end_only_after_end_event() -> None:
    """A batch cut before SessionEnd / SubagentStop leaves both agents executing."""
    events = scenario("main")
    obs = by_key(events[:22])  # up to 22_PostToolBatch, before SubagentStop
    assert (False, False) == (
        obs[(MAIN_SID, None)].last_is_end,
        obs[(MAIN_SID, MAIN_SUB)].last_is_end,
    )
    obs = by_key(events[:27])  # up to 27_Stop: the subagent ended, the session did not
    assert (False, True) == (
        obs[(MAIN_SID, None)].last_is_end,
        obs[(MAIN_SID, MAIN_SUB)].last_is_end,
    )


def test_observe_agents_stop_is_not_session_end() -> None:
    """Stop ends a turn, not the session; SubagentStop does not end the main agent."""
    events = scenario("main")
    obs = by_key([events[22], events[26]])  # SubagentStop, Stop
    assert (False, True) == (
        obs[(MAIN_SID, None)].last_is_end,
        obs[(MAIN_SID, MAIN_SUB)].last_is_end,
    )


def test_observe_agents_subagent_event_only_proves_parent_exists() -> None:
    """A batch of only subagent events creates the parent, stretching first_ns but not ending it."""
    events = scenario("main")[18:23]
    obs = by_key(events)
    main = obs[(MAIN_SID, None)]
    assert (ns(18), False, None) == (main.first_ns, main.last_is_end, main.agent_type)


def test_observe_agents_model_from_session_start() -> None:
    """SessionStart's model is recorded on the main agent only."""
    obs = by_key(scenario("tui"))
    assert {(TUI_SID, None), (TUI_SID, TUI_SUB)} == set(obs)
    assert MODEL == obs[(TUI_SID, None)].model
    assert obs[(TUI_SID, TUI_SUB)].model is None
    assert obs[(TUI_SID, TUI_SUB)].last_is_end


def test_observe_agents_compact_fork_with_empty_agent_type() -> None:
    """The compaction fork (agent_type "") is a complete untyped child; model from SessionStart."""
    obs = by_key(scenario("compact"))
    fork = obs[(MAIN_SID, "a63535f54dd6de1ea")]
    assert (True, None) == (fork.last_is_end, fork.agent_type)
    main = obs[(MAIN_SID, None)]
    assert (MODEL, ns(4)) == (main.model, main.model_ns)
    assert main.last_is_end


def test_observe_agents_duplicates_merge_per_key() -> None:
    """The same events twice in one batch give one observation per key with the same values."""
    events = scenario("main")
    once = observe_agents(events)
    twice = observe_agents(events + events)
    assert 2 == len(twice)
    assert once == twice


def test_observe_agents_all_scenarios_one_per_key() -> None:
    """Every scenario batched together still yields exactly one observation per (session, agent)."""
    events = [e for d in sorted(ALL.iterdir()) for e in scenario(d.name)]
    keys = [(o.sid, o.aid) for o in observe_agents(events)]
    assert len(set(keys)) == len(keys)
    expected = {(e.claude_session_id, None) for e in events} | {
        (e.claude_session_id, e.claude_agent_id) for e in events if e.claude_agent_id
    }
    assert expected == set(keys)


def test_observe_agents_order_independent() -> None:
    """Observations depend on receive times, not on the order of events in the batch."""
    events = scenario("main")
    expected = sorted(observe_agents(events), key=lambda o: (o.sid, o.aid or ""))
    rng = random.Random(1234)
    for _ in range(20):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert expected == sorted(observe_agents(shuffled), key=lambda o: (o.sid, o.aid or ""))


def test_observe_agents_skips_events_without_session() -> None:
    """An event with no session id (empty payload, no env) produces no observation."""
    data = encode(b"", event="StopFailure", received_ns=BASE_NS, host=HOST)
    event = parse("empty", data, default_host=HOST, mtime_ns=0)
    assert [] == observe_agents([event])


def test_observe_agents_empty_payload_uses_env_session() -> None:
    """An empty-stdin StopFailure with CLAUDE_CODE_SESSION_ID still observes its session."""
    data = encode(
        b"",
        event="StopFailure",
        received_ns=BASE_NS,
        host=HOST,
        env={"CLAUDE_CODE_SESSION_ID": MAIN_SID},
    )
    event = parse("empty", data, default_host=HOST, mtime_ns=0)
    [o] = observe_agents([event])
    assert (MAIN_SID, None, False) == (o.sid, o.aid, o.last_is_end)


def test_observe_agents_slug_from_env_on_main_only() -> None:
    """SESSION_DB_SESSION links the main agent to a workflow slug; subagents carry none."""
    obs = by_key(scenario("main", env={"SESSION_DB_SESSION": "fix-login"}))
    assert ("fix-login", None) == (obs[(MAIN_SID, None)].slug, obs[(MAIN_SID, MAIN_SUB)].slug)
