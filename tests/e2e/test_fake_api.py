"""The fake Anthropic API on its own (no CLI): the wire format the e2e tests rely on."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.fake_api import (
    MODEL,
    SCENARIO_HEADER,
    Failure,
    FakeAnthropicAPI,
    Reply,
    Text,
    Thinking,
    ToolUse,
    Usage,
)

USAGE = Usage(
    input_tokens=11, cache_write_5m=22, cache_write_1h=33, cache_read=44, output_tokens=55
)


@pytest.fixture
def api() -> Iterator[FakeAnthropicAPI]:
    server = FakeAnthropicAPI()
    try:
        yield server
    finally:
        server.close()


def post(
    api: FakeAnthropicAPI, body: dict[str, Any], scenario: str = "s"
) -> tuple[int, dict[str, str], bytes]:
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(
            "POST",
            "/v1/messages?beta=true",
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", SCENARIO_HEADER: scenario},
        )
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    frames = []
    for frame in data.decode().split("\n\n"):
        if frame.strip():
            name, payload = frame.split("\n", 1)
            frames.append(
                (name.removeprefix("event: "), json.loads(payload.removeprefix("data: ")))
            )
    return frames


def main_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "stream": True,
        "max_tokens": 32000,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.330"}],
        "messages": [{"role": "user", "content": "go"}],
        **extra,
    }


def test_fake_api_streams_a_reply_like_the_messages_api(api: FakeAnthropicAPI) -> None:
    """SSE frames in API order, final usage in message_delta, ids in headers and record agree."""
    tool = ToolUse("toolu_x", "Bash", {"command": "echo hi", "description": "d"})
    api.script("s", {"main": [Reply((Thinking("t"), Text("hello"), tool), USAGE)]})
    status, headers, data = post(api, main_body())
    frames = sse(data)
    [record] = api.records("s")
    assert 200 == status
    assert "text/event-stream" in headers["Content-Type"]
    assert record.request_id == headers["request-id"]
    block = [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
    ]
    assert ["message_start", "ping", *block * 3, "message_delta", "message_stop"] == [
        name for name, _ in frames
    ]
    assert record.message_id == frames[0][1]["message"]["id"]
    partial = "".join(
        f["delta"]["partial_json"]
        for n, f in frames
        if n == "content_block_delta" and f["index"] == 2
    )
    assert {"command": "echo hi", "description": "d"} == json.loads(partial)
    assert {"stop_reason": "tool_use", "stop_sequence": None} == frames[-2][1]["delta"]
    assert {
        "input_tokens": 11,
        "cache_creation_input_tokens": 55,
        "cache_read_input_tokens": 44,
        "cache_creation": {"ephemeral_5m_input_tokens": 22, "ephemeral_1h_input_tokens": 33},
        "output_tokens": 55,
        "service_tier": "standard",
    } == frames[-2][1]["usage"]
    assert ("main", USAGE, ["toolu_x"], False) == (
        record.role,
        record.usage,
        record.tool_use_ids,
        record.unscripted,
    )


def test_fake_api_routes_roles_to_their_own_steps(api: FakeAnthropicAPI) -> None:
    """Subagent, compaction and the max_tokens 1 check each get their role's next step."""
    api.script(
        "s",
        {
            "sub": [Reply((Text("sub"),), Usage(1, 0, 0, 0, 1))],
            "compact": [Reply((Text("summary"),), Usage(2, 0, 0, 0, 2))],
            "side": [Reply((Text("ok"),), Usage(3, 0, 0, 0, 3))],
        },
    )
    sub = main_body(system=[{"type": "text", "text": "cc_version=2.1.330; cc_is_subagent=true"}])
    compact = main_body(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Write a summary of this."}]}
        ]
    )
    post(api, sub)
    post(api, compact)
    status, _, data = post(api, {"model": MODEL, "max_tokens": 1, "messages": []})
    assert (200, "message", [{"type": "text", "text": "ok"}]) == (
        status,
        json.loads(data)["type"],
        json.loads(data)["content"],
    )
    assert [("sub", 1), ("compact", 2), ("side", 3)] == [
        (r.role, r.usage.input_tokens if r.usage else None) for r in api.records("s")
    ]


def test_fake_api_answers_a_failure_to_every_attempt(api: FakeAnthropicAPI) -> None:
    """A scripted Failure is a JSON error body with its status, again on every retry."""
    api.script("s", {"main": [Failure(400, "invalid_request_error", "forced")]})
    answers = [post(api, main_body()) for _ in range(3)]
    assert [400] * 3 == [status for status, _, _ in answers]
    assert {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "forced"},
    } == json.loads(answers[0][2])
    assert all(headers["request-id"].startswith("req_") for _, headers, _ in answers)


def test_fake_api_flags_requests_beyond_the_script(api: FakeAnthropicAPI) -> None:
    """A request with no step left still gets an answer, and its record says unscripted."""
    status, _, _ = post(api, main_body(), scenario="unknown")
    assert (200, [True]) == (status, [r.unscripted for r in api.records("unknown")])
