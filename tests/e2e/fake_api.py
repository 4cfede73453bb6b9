"""A scripted fake of the Anthropic Messages API for the real Claude Code CLI (docs/design/claude-code.md §16).

Standard library only. Every request is tagged with its scenario by the CLI itself
(`ANTHROPIC_CUSTOM_HEADERS="X-Test-Scenario: <name>"`), classified by role (`main`, `sub` for a
subagent, `compact` for a compaction call, `side` for the non-streaming `max_tokens: 1` check,
`other` for any other path, `egress` for a proxy request meant for the internet) and answered
with the next scripted step for that role. A `Reply` is streamed as SSE exactly like the real
API: message_start, content blocks (start, deltas, stop), message_delta with the cumulative
final usage, message_stop; the HTTP `request-id` header becomes the transcript's `requestId`.
A `Failure` is answered as a JSON error body on every attempt (it is never used up).

Every request is recorded, so tests know exactly which usage the CLI was told about.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "claude-sonnet-4-5-20250929"
SCENARIO_HEADER = "X-Test-Scenario"

# Sonnet 4.5 list prices, USD per million tokens (docs/design/claude-code.md §11; the CLI's own table agrees).
PRICE_PER_MTOK = {
    "input": Decimal(3),
    "cache_write_5m": Decimal("3.75"),
    "cache_write_1h": Decimal(6),
    "cache_read": Decimal("0.30"),
    "output": Decimal(15),
}


@dataclass(frozen=True)
class Usage:
    """Token counts of one response; cache writes split by TTL as the API reports them."""

    input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0
    speed: str | None = None  # "fast" for a fast-mode response (docs/design/claude-code.md §9); None: not sent

    @property
    def prompt_tokens(self) -> int:
        """Input incl. cache writes and reads: what a whole-request price tier looks at."""
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.cache_read

    def api(self, output_tokens: int | None = None) -> dict[str, Any]:
        """The `usage` object of the Messages API (output_tokens may be a placeholder)."""
        speed = {} if self.speed is None else {"speed": self.speed}
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_5m + self.cache_write_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard",
            **speed,
        }

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cache_write_5m + other.cache_write_5m,
            self.cache_write_1h + other.cache_write_1h,
            self.cache_read + other.cache_read,
            self.output_tokens + other.output_tokens,
        )

    def cost_usd(self) -> Decimal:
        """List price of these tokens (Sonnet 4.5, no long-context or speed multiplier)."""
        p = PRICE_PER_MTOK
        return (
            self.input_tokens * p["input"]
            + self.cache_write_5m * p["cache_write_5m"]
            + self.cache_write_1h * p["cache_write_1h"]
            + self.cache_read * p["cache_read"]
            + self.output_tokens * p["output"]
        ) / 1_000_000


def total(usages: Iterable[Usage]) -> Usage:
    return sum(usages, Usage())


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Thinking:
    thinking: str
    signature: str = "ZmFrZS1zaWduYXR1cmUtZTJl"


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: Mapping[str, Any]


Block = Text | Thinking | ToolUse


@dataclass(frozen=True)
class Reply:
    """One successful response: content blocks and the usage reported for it."""

    blocks: tuple[Block, ...]
    usage: Usage

    @property
    def stop_reason(self) -> str:
        return "tool_use" if any(isinstance(b, ToolUse) for b in self.blocks) else "end_turn"


@dataclass(frozen=True)
class Failure:
    """An HTTP error answered to every attempt of its role (never used up)."""

    status: int
    error_type: str
    message: str


Step = Reply | Failure

UNSCRIPTED = Reply((Text("(no scripted response left)"),), Usage(1, 0, 0, 0, 1))


@dataclass
class Record:
    """One HTTP request the CLI sent, and what it was answered."""

    n: int
    scenario: str
    role: str
    method: str
    path: str
    model: str | None
    stream: bool
    max_tokens: int | None
    status: int
    session_id: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    stop_reason: str | None = None
    usage: Usage | None = None
    tool_use_ids: list[str] = field(default_factory=list)
    unscripted: bool = False


def _system_text(body: Mapping[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


def _last_user_text(body: Mapping[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(
                b.get("text", "")
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
        return ""
    return ""


_SUMMARY_RE = re.compile(r"\bsummary\b", re.IGNORECASE)


def classify(path: str, body: Mapping[str, Any]) -> str:
    """The role of a request: main, sub (subagent), compact, side (max_tokens 1 check), other."""
    if not path.startswith("/v1/messages") or path.startswith("/v1/messages/"):
        return "other"
    if not body.get("stream") and body.get("max_tokens") == 1:
        return "side"
    if "cc_is_subagent=true" in _system_text(body):
        return "sub"
    if _SUMMARY_RE.search(_last_user_text(body)):
        return "compact"
    return "main"


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _block_json(block: Block) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}


def sse_body(reply: Reply, message_id: str, model: str) -> bytes:
    """The event stream of one response (docs/design/claude-code.md §16, table "SSE a fake server must emit")."""
    out = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": reply.usage.api(output_tokens=1),
                },
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for i, block in enumerate(reply.blocks):
        if isinstance(block, Text):
            start: dict[str, Any] = {"type": "text", "text": ""}
            half = len(block.text) // 2
            deltas = [
                {"type": "text_delta", "text": part}
                for part in (block.text[:half], block.text[half:])
                if part
            ]
        elif isinstance(block, Thinking):
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block.thinking},
                {"type": "signature_delta", "signature": block.signature},
            ]
        else:
            start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            text = json.dumps(dict(block.input))
            half = len(text) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (text[:half], text[half:])
            ]
        out.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": start},
            )
        )
        out.extend(
            _sse("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})
            for d in deltas
        )
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": reply.usage.api(),
            },
        )
    )
    out.append(_sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def message_json(reply: Reply, message_id: str, model: str) -> dict[str, Any]:
    """The non-streaming response body of the same reply."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_block_json(b) for b in reply.blocks],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": reply.usage.api(),
    }


class FakeAnthropicAPI:
    """The server: `script()` a scenario, point the CLI at `url`, read `records()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, dict[str, list[Step]]] = {}
        self._cursor: dict[tuple[str, str], int] = {}
        self._records: list[Record] = []
        self._n = itertools.count(1)
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                api._handle(self)

            def do_GET(self) -> None:
                api._handle(self)

            def do_CONNECT(self) -> None:
                api._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server: (host, port), not a bytes path
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def script(self, scenario: str, steps: Mapping[str, Sequence[Step]]) -> None:
        """Answer requests tagged `scenario` with these steps, per role, in order."""
        with self._lock:
            self._scripts[scenario] = {role: list(s) for role, s in steps.items()}
            for key in [k for k in self._cursor if k[0] == scenario]:
                del self._cursor[key]

    def records(self, scenario: str | None = None) -> list[Record]:
        with self._lock:
            return [r for r in self._records if scenario is None or r.scenario == scenario]

    # -- request handling -------------------------------------------------------------------

    def _next_step(self, scenario: str, role: str) -> tuple[Step, bool]:
        steps = self._scripts.get(scenario, {}).get(role, [])
        i = self._cursor.get((scenario, role), 0)
        if i >= len(steps):
            return UNSCRIPTED, True
        step = steps[i]
        if isinstance(step, Reply):
            self._cursor[(scenario, role)] = i + 1
        return step, False

    @staticmethod
    def _read_body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes, rid: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("request-id", rid)
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        n = next(self._n)
        scenario = h.headers.get(SCENARIO_HEADER, "")
        session_id = h.headers.get("X-Claude-Code-Session-Id")
        if h.command == "CONNECT" or h.path.startswith(("http://", "https://")):
            # Sent through HTTP(S)_PROXY: the CLI tried to reach the internet.
            with self._lock:
                self._records.append(
                    Record(n, scenario, "egress", h.command, h.path, None, False, None, 403)
                )
            refusal = json.dumps(
                {"type": "error", "error": {"type": "forbidden", "message": "offline test"}}
            )
            h.close_connection = True
            self._send(h, 403, "application/json", refusal.encode(), f"req_e2e_egress_{n}")
            return
        raw = self._read_body(h)
        body: dict[str, Any]
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            parsed = {}
        body = parsed if isinstance(parsed, dict) else {}
        role = classify(h.path, body) if h.command == "POST" else "other"
        model = body.get("model") if isinstance(body.get("model"), str) else None
        stream = bool(body.get("stream"))
        max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else None
        tag = (
            f"{re.sub(r'[^A-Za-z0-9]', '', scenario) or 'x'}_{role}_{n:03d}_{secrets.token_hex(4)}"
        )
        rid = f"req_e2e_{tag}"
        record = Record(
            n, scenario, role, h.command, h.path, model, stream, max_tokens, 200, session_id
        )
        if role == "other":
            record.status = 404
            payload = {"type": "error", "error": {"type": "not_found_error", "message": h.path}}
            with self._lock:
                self._records.append(record)
            self._send(h, 404, "application/json", json.dumps(payload).encode(), rid)
            return
        with self._lock:
            step, unscripted = self._next_step(scenario, role)
            record.unscripted = unscripted
            if isinstance(step, Failure):
                record.status = step.status
            else:
                record.message_id = f"msg_e2e_{tag}"
                record.request_id = rid
                record.stop_reason = step.stop_reason
                record.usage = step.usage
                record.tool_use_ids = [b.id for b in step.blocks if isinstance(b, ToolUse)]
            self._records.append(record)
        if isinstance(step, Failure):
            payload = {"type": "error", "error": {"type": step.error_type, "message": step.message}}
            self._send(h, step.status, "application/json", json.dumps(payload).encode(), rid)
            return
        assert record.message_id is not None
        if stream:
            data = sse_body(step, record.message_id, model or MODEL)
            self._send(h, 200, "text/event-stream; charset=utf-8", data, rid)
        else:
            data = json.dumps(message_json(step, record.message_id, model or MODEL)).encode()
            self._send(h, 200, "application/json", data, rid)
