"""Mock LLM provider: an asyncio HTTP/1.1 server speaking the OpenAI and Anthropic wire formats.

Run:  python -m tests.mock_provider.server --host 127.0.0.1 --port 0
Once listening it prints ``MOCK_PROVIDER_READY port=<N>`` on stdout (port 0 picks a free port).

Endpoints
    POST /v1/chat/completions                             OpenAI chat, JSON or SSE ("stream": true)
    POST /v1/embeddings                                   OpenAI embeddings ("float" or "base64")
    GET  /v1/models                                       OpenAI model list
    POST /openai/deployments/{deployment}/chat/completions?api-version=...   Azure OpenAI chat
    POST /openai/deployments/{deployment}/embeddings?api-version=...         Azure OpenAI embeddings
    POST /v1/messages                                     Anthropic messages, JSON or SSE ("stream": true)
    POST /__mock__/reset                                  clear the statistics and the fail-then-ok counters
    GET  /__mock__/stats                                  statistics as JSON (see MockProviderApp.stats)
For Azure paths the model is the deployment name.

Replies
    Text: "Hello from mock <model>! You said: <first 40 characters of the last user text>".
    A stream splits the text into N content chunks (default 20) of near-equal length in characters; a text
    shorter than N characters is first padded with filler words, so only then do stream and JSON differ.
    usage: prompt tokens = words of the messages and system prompt, completion tokens = words produced
    (for a tool call: words of its arguments JSON).
    Tool call: if the request has tools and its last message is a user message (not a tool result) containing
    the word "weather", the reply calls the first tool; each argument of its JSON schema gets a sample value.

Behaviour grammar
    behaviours := token ("+" token)*
    token      := "error-" STATUS        answer STATUS (400-599) with the provider's error body;
                                         429 adds "retry-after: 1"
                | "slow-" MS             wait MS milliseconds before answering (streams: before the first byte)
                | "stream-delay-" MS     wait MS milliseconds between consecutive SSE events
                | "chunks-" N            stream N content chunks (N >= 1)
                | "malformed"            200 with a body that is not JSON (streams: a garbage SSE event
                                         after the first event)
                | "cut-" N               streams: send N SSE events, then close the connection without the
                                         terminator; non-stream: close the connection after the response head
                | "hang"                 never answer; the request ends when the client disconnects
                | "fail-" K "-then-ok"   the first K requests of a scenario fail with 500, later ones succeed;
                                         the scenario is the "x-mock-scenario" header, else the model name
                | "say-" HEX             the reply text is HEX decoded as UTF-8 (instead of the greeting)
    Behaviours come from the model name "mock-<behaviours>" (e.g. "mock-slow-100+chunks-5") and from the
    header "x-mock-behavior: <behaviours>"; header tokens override model tokens of the same kind. A model
    name whose suffix is not a valid behaviour list (e.g. "mock-gpt") is an ordinary model name, while an
    invalid header is answered with 400.
    Order: hang, slow, fail-then-ok, error, then the normal answer shaped by malformed, cut, chunks and
    stream-delay.

Authentication
    "Authorization: Bearer <key>", "x-api-key" and "api-key" are all accepted, and recorded with the other
    headers in the statistics ("last_headers"). If MOCK_PROVIDER_REQUIRED_KEY is set, a request that does
    not present exactly that key gets 401 in the provider's error shape.

Validation: chat needs a non-empty "messages" array, Anthropic messages also "max_tokens"; otherwise 400.

HTTP: keep-alive and pipelined requests (served in order); streams use chunked transfer encoding (HTTP/1.0
clients get a close-delimited body). Request bodies need Content-Length (a chunked request body gets 501);
"Expect: 100-continue" gets an interim 100 response. A client that closes its sending side counts as gone:
its in-flight request is cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import http.client
import itertools
import json
import logging
import math
import os
import re
import signal
import struct
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mock_provider")

READY_MARKER = "MOCK_PROVIDER_READY"
REQUIRED_KEY_ENV = "MOCK_PROVIDER_REQUIRED_KEY"
MODEL_BEHAVIOR_PREFIX = "mock-"
BEHAVIOR_HEADER = "x-mock-behavior"
SCENARIO_HEADER = "x-mock-scenario"

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_STREAM_CHUNKS = 20
DEFAULT_EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 4096
QUOTED_USER_TEXT_CHARS = 40
SYSTEM_FINGERPRINT = "fp_mock"
FILLER_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
AVAILABLE_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "text-embedding-3-small",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "mock-model",
)
SAMPLE_ARGUMENT_VALUES = {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}
WEATHER_WORD = re.compile(r"\bweather\b", re.IGNORECASE)

OPENAI = "openai"
ANTHROPIC = "anthropic"


# --- Behaviours -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Behavior:
    error_status: int | None = None
    slow_ms: int = 0
    stream_delay_ms: int = 0
    chunks: int = DEFAULT_STREAM_CHUNKS
    malformed: bool = False
    cut_after: int | None = None
    hang: bool = False
    fail_first: int = 0
    say: str | None = None


def _say(match: re.Match) -> dict[str, Any]:
    try:
        return {"say": bytes.fromhex(match[1]).decode("utf-8")}
    except UnicodeDecodeError as error:
        raise ValueError(f"say- must be hex of UTF-8 text: {error}") from None


def _error_status(match: re.Match) -> dict[str, Any]:
    status = int(match[1])
    if not 400 <= status <= 599:
        raise ValueError(f"error status must be within 400-599, got {status}")
    return {"error_status": status}


def _chunk_count(match: re.Match) -> dict[str, Any]:
    count = int(match[1])
    if count < 1:
        raise ValueError("chunks must be at least 1")
    return {"chunks": count}


BEHAVIOR_TOKENS = (
    (re.compile(r"error-(\d{3})"), _error_status),
    (re.compile(r"slow-(\d+)"), lambda match: {"slow_ms": int(match[1])}),
    (re.compile(r"stream-delay-(\d+)"), lambda match: {"stream_delay_ms": int(match[1])}),
    (re.compile(r"chunks-(\d+)"), _chunk_count),
    (re.compile(r"malformed"), lambda match: {"malformed": True}),
    (re.compile(r"cut-(\d+)"), lambda match: {"cut_after": int(match[1])}),
    (re.compile(r"hang"), lambda match: {"hang": True}),
    (re.compile(r"fail-(\d+)-then-ok"), lambda match: {"fail_first": int(match[1])}),
    (re.compile(r"say-((?:[0-9a-f]{2})+)"), _say),
)


@functools.lru_cache(maxsize=4096)
def parse_behaviors(spec: str) -> tuple[tuple[str, Any], ...]:
    """Parse "token+token..." into (Behavior field, value) pairs; raise ValueError on an unknown token."""
    settings: dict[str, Any] = {}
    for token in spec.split("+"):
        token = token.strip().lower()
        for pattern, to_settings in BEHAVIOR_TOKENS:
            match = pattern.fullmatch(token)
            if match:
                settings.update(to_settings(match))
                break
        else:
            raise ValueError(f"unknown mock behaviour {token!r}")
    return tuple(settings.items())


def resolve_behavior(model: str | None, header: str | None) -> Behavior:
    settings: dict[str, Any] = {}
    if model and model.startswith(MODEL_BEHAVIOR_PREFIX):
        try:
            settings.update(parse_behaviors(model[len(MODEL_BEHAVIOR_PREFIX) :]))
        except ValueError:
            pass  # an ordinary model name such as "mock-model"
    if header:
        settings.update(parse_behaviors(header))
    return Behavior(**settings)


# --- HTTP/1.1 ---------------------------------------------------------------------------------------------


class HttpError(Exception):
    """A request that cannot be parsed; answered with a plain-text error, then the connection closes."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    method: str
    path: str
    http11: bool
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"bad request line {request_line!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in header_lines:
        name, separator, value = line.partition(":")
        if not separator:
            raise HttpError(400, f"bad header line {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return method, target, version, headers


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpConnection(asyncio.Protocol):
    """One client connection: reads requests in order and hands each to the app.

    A worker task serves the requests; connection_lost cancels it, so a request that is sleeping, streaming
    or hanging stops as soon as its client goes away instead of lingering until its next write.
    """

    def __init__(self, app: MockProviderApp):
        self._app = app
        self._buffer = bytearray()
        self._data_arrived = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._transport: asyncio.Transport | None = None
        self._worker: asyncio.Task | None = None
        self._keep_alive = True
        self._chunked = False
        self._response_started = False

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._app.open_connections += 1
        self._worker = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._data_arrived.set()

    def eof_received(self) -> bool:
        return False  # a client half-close counts as a disconnect: close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._app.open_connections -= 1
        self._worker.cancel()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # Serving and reading requests

    async def _serve(self) -> None:
        try:
            while True:
                request = await self._read_request()
                self._keep_alive = request.keep_alive
                self._response_started = False
                try:
                    await self._app.handle(request, self)
                except Exception:
                    log.exception("error while serving %s %s", request.method, request.path)
                    if not self._response_started:
                        await self.send(500, [("content-type", "text/plain")], b"mock provider internal error")
                    break
                if not self._keep_alive or self._transport.is_closing():
                    break
        except HttpError as error:
            self._keep_alive = False
            await self.send(error.status, [("content-type", "text/plain")], str(error).encode())
        finally:
            self._transport.close()

    async def _wait_for_data(self) -> None:
        self._data_arrived.clear()
        await self._data_arrived.wait()

    async def _read_head(self) -> bytes:
        while True:
            # Tolerate stray CRLFs between requests (RFC 9112 section 2.2).
            while self._buffer.startswith(b"\r\n"):
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end > MAX_HEAD_BYTES or (end < 0 and len(self._buffer) > MAX_HEAD_BYTES):
                raise HttpError(431, "request head too large")
            if end >= 0:
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                return head
            await self._wait_for_data()

    async def _read_request(self) -> Request:
        method, target, version, headers = parse_head(await self._read_head())
        if headers.get("transfer-encoding", "identity").lower() != "identity":
            raise HttpError(501, "only Content-Length request bodies are supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise HttpError(400, "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, "request body too large")
        if length > len(self._buffer) and headers.get("expect", "").lower() == "100-continue":
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while len(self._buffer) < length:
            await self._wait_for_data()
        body = bytes(self._buffer[:length])
        del self._buffer[:length]

        path = target.partition("?")[0]
        http11 = version == "HTTP/1.1"
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if http11 else "keep-alive" in connection
        return Request(method, path, http11, headers, body, keep_alive)

    # Writing responses

    def _framing_headers(self, content_length: int | None) -> list[tuple[str, str]]:
        if content_length is not None:
            framing = [("content-length", str(content_length))]
        elif self._chunked:
            framing = [("transfer-encoding", "chunked")]
        else:
            framing = []  # HTTP/1.0 stream: the body ends when the connection closes
        return [*framing, ("connection", "keep-alive" if self._keep_alive else "close")]

    async def _drain(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()

    async def send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._response_started = True
        self._transport.write(response_head(status, headers + self._framing_headers(len(body))) + body)
        await self._drain()

    def send_head_and_close(self, status: int, headers: list[tuple[str, str]], content_length: int) -> None:
        """Announce a body of content_length bytes, then close the connection without sending it."""
        self._response_started = True
        self._transport.write(response_head(status, headers + self._framing_headers(content_length)))
        self.close()

    def start_stream(self, status: int, headers: list[tuple[str, str]], request: Request) -> None:
        self._response_started = True
        self._chunked = request.http11
        if not self._chunked:
            self._keep_alive = False
        self._transport.write(response_head(status, headers + self._framing_headers(None)))

    async def write_stream(self, data: bytes) -> None:
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        self._transport.write(data)
        await self._drain()

    async def end_stream(self) -> None:
        if self._chunked:
            self._transport.write(b"0\r\n\r\n")
        await self._drain()

    def close(self) -> None:
        """Close the connection after flushing what was written; an unfinished body stays unfinished."""
        self._keep_alive = False
        self._transport.close()


# --- Request content --------------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """Text of a message content: a string, or OpenAI content parts / Anthropic blocks (nested for tool results)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(filter(None, (content_text(part) for part in content)))
    if isinstance(content, dict):
        return content_text(content.get("text", content.get("content")))
    return ""


def word_count(text: str) -> int:
    return len(text.split())


def prompt_word_count(messages: list, system: Any = None) -> int:
    words = word_count(content_text(system))
    words += sum(word_count(content_text(message.get("content"))) for message in messages if isinstance(message, dict))
    return max(words, 1)


def last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def is_tool_result(message: dict) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "tool_result" for part in content
    )


def wants_tool_call(messages: list, tools: Any) -> bool:
    if not tools or not isinstance(tools, list) or not messages:
        return False
    last = messages[-1]
    return (
        isinstance(last, dict)
        and last.get("role") == "user"
        and not is_tool_result(last)
        and WEATHER_WORD.search(content_text(last.get("content"))) is not None
    )


def sample_arguments(schema: Any) -> dict[str, Any]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    arguments = {}
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        enum = spec.get("enum")
        arguments[name] = enum[0] if enum else SAMPLE_ARGUMENT_VALUES.get(spec.get("type"), "mock")
    return arguments


@dataclass(frozen=True, slots=True)
class Reply:
    """What the mock model answers: either text or one tool call."""

    text: str | None
    tool_name: str | None
    tool_arguments: str | None  # JSON
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return word_count(self.text if self.text is not None else self.tool_arguments)


def build_reply(model: str, messages: list, tools: Any, system: Any, min_text_length: int, say: str | None = None) -> Reply:
    """min_text_length pads the text with filler words so a stream can be split into that many chunks."""
    prompt_tokens = prompt_word_count(messages, system)
    if wants_tool_call(messages, tools):
        tool = tools[0] if isinstance(tools[0], dict) else {}
        function = tool.get("function", tool)  # OpenAI nests the definition under "function"
        schema = function.get("parameters", function.get("input_schema"))
        arguments = json.dumps(sample_arguments(schema))
        return Reply(None, function.get("name", "tool"), arguments, prompt_tokens)
    text = say if say is not None else f"Hello from mock {model}! You said: {last_user_text(messages)[:QUOTED_USER_TEXT_CHARS]}"
    filler = itertools.cycle(FILLER_WORDS)
    while len(text) < min_text_length:
        text += " " + next(filler)
    return Reply(text, None, None, prompt_tokens)


def split_evenly(text: str, count: int) -> list[str]:
    """Split text into min(count, len(text)) non-empty pieces whose lengths differ by at most one."""
    count = max(1, min(count, len(text)))
    size, remainder = divmod(len(text), count)
    pieces, start = [], 0
    for index in range(count):
        end = start + size + (index < remainder)
        pieces.append(text[start:end])
        start = end
    return pieces


def embedding_inputs(raw: Any) -> list[tuple[str, int]]:
    """(text to embed, token count) per input: a string, a list of strings, a token list or token lists."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError("'input' must be a non-empty string or array")
    if all(isinstance(item, int) for item in raw):
        raw = [raw]
    inputs = []
    for item in raw:
        if isinstance(item, str):
            inputs.append((item, word_count(item)))
        elif isinstance(item, list) and all(isinstance(token, int) for token in item):
            inputs.append((" ".join(map(str, item)), len(item)))
        else:
            raise ValueError("'input' items must be strings or arrays of token ids")
    return inputs


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of the text."""
    digest = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    raw = [value / 2**31 - 1.0 for value in struct.unpack(f"<{dimensions}I", digest)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [value / norm for value in raw]


# --- Response payloads ------------------------------------------------------------------------------------


OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_payload(flavor: str, status: int, message: str) -> dict[str, Any]:
    if flavor == ANTHROPIC:
        error_type = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": error_type, "message": message}}
    error_type, code = OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def sse_data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\n".encode() + sse_data(payload)


def openai_usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def openai_tool_call(reply: Reply, call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": reply.tool_name, "arguments": reply.tool_arguments}}


def openai_chat_completion(reply: Reply, model: str, response_id: str) -> dict[str, Any]:
    if reply.text is not None:
        message = {"role": "assistant", "content": reply.text, "refusal": None}
        finish_reason = "stop"
    else:
        message = {"role": "assistant", "content": None, "refusal": None,
                   "tool_calls": [openai_tool_call(reply, f"call_{response_id}")]}
        finish_reason = "tool_calls"
    return {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": openai_usage(reply),
    }


def openai_chat_events(reply: Reply, model: str, response_id: str, chunks: int, include_usage: bool) -> list[bytes]:
    envelope = {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse_data({**envelope, "choices": [choice], **extra})

    if reply.text is not None:
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in split_evenly(reply.text, chunks)]
        events.append(chunk({}, "stop"))
    else:
        call = openai_tool_call(reply, f"call_{response_id}")
        call["function"]["arguments"] = ""
        events = [chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]})]
        events += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in split_evenly(reply.tool_arguments, chunks)
        ]
        events.append(chunk({}, "tool_calls"))
    if include_usage:
        events.append(sse_data({**envelope, "choices": [], "usage": openai_usage(reply)}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_content_block(reply: Reply, response_id: str) -> dict[str, Any]:
    if reply.text is not None:
        return {"type": "text", "text": reply.text}
    return {"type": "tool_use", "id": f"toolu_{response_id}", "name": reply.tool_name,
            "input": json.loads(reply.tool_arguments)}


def anthropic_stop_reason(reply: Reply) -> str:
    return "end_turn" if reply.text is not None else "tool_use"


def anthropic_message(reply: Reply, model: str, response_id: str) -> dict[str, Any]:
    return {
        "id": f"msg_{response_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [anthropic_content_block(reply, response_id)],
        "stop_reason": anthropic_stop_reason(reply),
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
    }


def anthropic_message_events(reply: Reply, model: str, response_id: str, chunks: int) -> list[bytes]:
    start_message = {
        **anthropic_message(reply, model, response_id),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1},
    }
    if reply.text is not None:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split_evenly(reply.text, chunks)]
    else:
        block = {**anthropic_content_block(reply, response_id), "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": piece}
                  for piece in split_evenly(reply.tool_arguments, chunks)]
    return [
        sse_event({"type": "message_start", "message": start_message}),
        sse_event({"type": "content_block_start", "index": 0, "content_block": block}),
        sse_event({"type": "ping"}),
        *(sse_event({"type": "content_block_delta", "index": 0, "delta": delta}) for delta in deltas),
        sse_event({"type": "content_block_stop", "index": 0}),
        sse_event({
            "type": "message_delta",
            "delta": {"stop_reason": anthropic_stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": reply.completion_tokens},
        }),
        sse_event({"type": "message_stop"}),
    ]


MALFORMED_JSON_BODY = b'{"id": "mock-malformed", "object": "chat.completion", "choices": [{"message": '
MALFORMED_SSE_EVENT = {
    OPENAI: b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": \n\n',
    ANTHROPIC: b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": \n\n',
}


# --- Application ------------------------------------------------------------------------------------------


class RequestFailed(Exception):
    """Ends a provider request with an error response in the provider's shape."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: str  # "chat", "embeddings", "models" or "messages"
    flavor: str
    deployment: str | None = None


ROUTES = {
    ("POST", "/v1/chat/completions"): Route("chat", OPENAI),
    ("POST", "/v1/embeddings"): Route("embeddings", OPENAI),
    ("GET", "/v1/models"): Route("models", OPENAI),
    ("POST", "/v1/messages"): Route("messages", ANTHROPIC),
}
AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/(chat/completions|embeddings)")
AZURE_ENDPOINTS = {"chat/completions": "chat", "embeddings": "embeddings"}


def find_route(method: str, path: str) -> Route | None:
    route = ROUTES.get((method, path))
    if route is None and method == "POST":
        match = AZURE_PATH.fullmatch(path)
        if match:
            route = Route(AZURE_ENDPOINTS[match[2]], OPENAI, urllib.parse.unquote(match[1]))
    return route


def presented_keys(headers: dict[str, str]) -> list[str]:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    keys = [token.strip()] if scheme.lower() == "bearer" else []
    keys.extend(headers[name] for name in ("x-api-key", "api-key") if name in headers)
    return keys


class MockProviderApp:
    def __init__(self, required_key: str | None = None):
        self.required_key = required_key
        self.open_connections = 0
        self.in_flight = 0
        self._response_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.request_count = 0
        self.by_path: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.scenario_counts: Counter[str] = Counter()
        self.last_headers: dict[str, str] = {}
        self.last_body: Any = None

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.request_count,
            "by_path": dict(self.by_path),
            "by_model": dict(self.by_model),
            "scenarios": dict(self.scenario_counts),
            "last_headers": self.last_headers,
            "last_body": self.last_body,
            "in_flight": self.in_flight,
            # Includes the connection that asks for the statistics.
            "open_connections": self.open_connections,
        }

    async def handle(self, request: Request, conn: HttpConnection) -> None:
        if request.path.startswith("/__mock__/"):
            await self._handle_control(request, conn)
            return
        route = find_route(request.method, request.path)
        flavor = route.flavor if route else (ANTHROPIC if request.path.startswith("/v1/messages") else OPENAI)
        self.in_flight += 1
        try:
            await self._handle_provider_request(request, conn, route)
        except RequestFailed as failure:
            await self._send_error(conn, flavor, failure.status, str(failure))
        finally:
            self.in_flight -= 1

    async def _handle_control(self, request: Request, conn: HttpConnection) -> None:
        if (request.method, request.path) == ("GET", "/__mock__/stats"):
            payload = self.stats()
        elif (request.method, request.path) == ("POST", "/__mock__/reset"):
            self.reset()
            payload = {"reset": True}
        else:
            await conn.send(404, [("content-type", "application/json")], b'{"error": "unknown control endpoint"}')
            return
        await conn.send(200, [("content-type", "application/json")], json.dumps(payload).encode())

    async def _handle_provider_request(self, request: Request, conn: HttpConnection, route: Route | None) -> None:
        body, body_error = self._parse_body(request.body)
        model = route.deployment if route and route.deployment else body.get("model")
        model = model if isinstance(model, str) else None
        self._record(request, model, body if body_error is None else request.body.decode("utf-8", "replace"))

        if route is None:
            raise RequestFailed(404, f"Unknown endpoint {request.method} {request.path}")
        if body_error:
            raise RequestFailed(400, body_error)
        if self.required_key is not None and self.required_key not in presented_keys(request.headers):
            raise RequestFailed(401, "Invalid API key")
        try:
            behavior = resolve_behavior(model, request.headers.get(BEHAVIOR_HEADER))
        except ValueError as error:
            raise RequestFailed(400, f"Invalid {BEHAVIOR_HEADER} header: {error}") from None

        if behavior.hang:
            await asyncio.get_running_loop().create_future()  # cancelled when the client disconnects
        if behavior.slow_ms:
            await asyncio.sleep(behavior.slow_ms / 1000)
        if behavior.fail_first:
            scenario = request.headers.get(SCENARIO_HEADER) or model or request.path
            self.scenario_counts[scenario] += 1
            attempt = self.scenario_counts[scenario]
            if attempt <= behavior.fail_first:
                raise RequestFailed(500, f"Mock failure {attempt} of {behavior.fail_first} for scenario {scenario!r}")
        if behavior.error_status:
            raise RequestFailed(behavior.error_status, f"Mock error {behavior.error_status}")

        response_id = f"mock{next(self._response_ids):06d}"
        if route.endpoint == "models":
            await self._send_json(conn, route.flavor, models_payload(), behavior)
        elif route.endpoint == "embeddings":
            await self._send_json(conn, route.flavor, embeddings_payload(body, model), behavior)
        else:
            await self._answer_conversation(request, conn, route, body, model, behavior, response_id)

    async def _answer_conversation(self, request: Request, conn: HttpConnection, route: Route, body: dict,
                                   model: str | None, behavior: Behavior, response_id: str) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestFailed(400, "'messages' must be a non-empty array")
        if route.flavor == ANTHROPIC and not isinstance(body.get("max_tokens"), int):
            raise RequestFailed(400, "max_tokens: Field required")
        model = model or "unknown"
        stream = body.get("stream") is True
        reply = build_reply(model, messages, body.get("tools"), body.get("system"),
                            min_text_length=behavior.chunks if stream else 0, say=behavior.say)
        if not stream:
            if route.flavor == ANTHROPIC:
                payload = anthropic_message(reply, model, response_id)
            else:
                payload = openai_chat_completion(reply, model, response_id)
            await self._send_json(conn, route.flavor, payload, behavior)
            return
        if route.flavor == ANTHROPIC:
            events = anthropic_message_events(reply, model, response_id, behavior.chunks)
        else:
            stream_options = body.get("stream_options")
            include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
            events = openai_chat_events(reply, model, response_id, behavior.chunks, include_usage)
        await self._send_stream(request, conn, route.flavor, events, behavior)

    @staticmethod
    def _parse_body(raw: bytes) -> tuple[dict[str, Any], str | None]:
        if not raw:
            return {}, None
        try:
            body = json.loads(raw)
        except ValueError as error:
            return {}, f"Request body is not valid JSON: {error}"
        if not isinstance(body, dict):
            return {}, "Request body must be a JSON object"
        return body, None

    def _record(self, request: Request, model: str | None, body: Any) -> None:
        self.request_count += 1
        self.by_path[request.path] += 1
        if model is not None:
            self.by_model[model] += 1
        self.last_headers = request.headers
        self.last_body = body

    def _response_headers(self, flavor: str, content_type: str) -> list[tuple[str, str]]:
        request_id_header = "request-id" if flavor == ANTHROPIC else "x-request-id"
        return [("content-type", content_type), (request_id_header, f"req_mock{next(self._request_ids):06d}")]

    async def _send_error(self, conn: HttpConnection, flavor: str, status: int, message: str) -> None:
        headers = self._response_headers(flavor, "application/json")
        if status == 429:
            headers.append(("retry-after", "1"))
        await conn.send(status, headers, json.dumps(error_payload(flavor, status, message)).encode())

    async def _send_json(self, conn: HttpConnection, flavor: str, payload: Any, behavior: Behavior) -> None:
        headers = self._response_headers(flavor, "application/json")
        body = MALFORMED_JSON_BODY if behavior.malformed else json.dumps(payload).encode()
        if behavior.cut_after is not None:
            conn.send_head_and_close(200, headers, len(body))
        else:
            await conn.send(200, headers, body)

    async def _send_stream(self, request: Request, conn: HttpConnection, flavor: str, events: list[bytes],
                           behavior: Behavior) -> None:
        if behavior.malformed:
            events.insert(1, MALFORMED_SSE_EVENT[flavor])
        headers = self._response_headers(flavor, "text/event-stream; charset=utf-8")
        headers.append(("cache-control", "no-cache"))
        conn.start_stream(200, headers, request)
        delay = behavior.stream_delay_ms / 1000
        for index, event in enumerate(events):
            if index == behavior.cut_after:
                break
            if delay and index:
                await asyncio.sleep(delay)
            await conn.write_stream(event)
        if behavior.cut_after is None:
            await conn.end_stream()
        else:
            conn.close()


def models_payload() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": 1700000000, "owned_by": "mock-provider"}
                 for model in AVAILABLE_MODELS],
    }


def embeddings_payload(body: dict[str, Any], model: str | None) -> dict[str, Any]:
    try:
        inputs = embedding_inputs(body.get("input"))
    except ValueError as error:
        raise RequestFailed(400, str(error)) from None
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise RequestFailed(400, f"'dimensions' must be an integer within 1-{MAX_EMBEDDING_DIMENSIONS}")
    encoding_format = body.get("encoding_format") or "float"
    if encoding_format not in ("float", "base64"):
        raise RequestFailed(400, "'encoding_format' must be 'float' or 'base64'")

    data = []
    for index, (text, _) in enumerate(inputs):
        vector: Any = embedding_vector(text, dimensions)
        if encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(token_count for _, token_count in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model or "unknown",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# --- Entry point ------------------------------------------------------------------------------------------


async def serve(host: str, port: int) -> None:
    app = MockProviderApp(required_key=os.environ.get(REQUIRED_KEY_ENV) or None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(app), host, port, backlog=4096)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"{READY_MARKER} port={bound_port}", flush=True)

    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
    # No wait_closed(): it would wait for open (possibly hanging) connections; asyncio.run cancels them.
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Mock OpenAI/Anthropic-compatible LLM provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    logging.basicConfig(format="mock_provider %(levelname)s %(message)s")
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
