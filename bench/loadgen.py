"""Load generator for HTTP/1.1 JSON APIs, to benchmark the gateway on a small machine.

    python -m bench.loadgen --url http://127.0.0.1:8000/v1/chat/completions --concurrency 32 --requests 5000 \
        --header 'authorization: Bearer <key>' --body '{"model": "mock-gpt", "messages": [...]}' [--stream]

Each of `concurrency` workers owns one keep-alive connection and sends POST requests on it back to back,
reconnecting when the server closes it. The request bytes are built once, and responses are parsed as they
arrive by a small state machine (status line, framing headers, Content-Length, chunked or close-delimited
body), so that the load generator's own CPU cost per request stays small next to the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import re
import resource
import time
import urllib.parse
from collections import Counter
from typing import Any

FRAMING_HEADER = re.compile(rb"\r\n(content-length|transfer-encoding|connection)[ \t]*:[ \t]*([^\r]*)", re.IGNORECASE)
SSE_DATA_LINE = b"\ndata:"
SSE_STREAM_ENDS = (b"\ndata: [DONE]", b"\nevent: message_stop")
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}

# Response parser states
HEAD, SIZED_BODY, CHUNKED_BODY, TRAILERS, CLOSE_DELIMITED_BODY = range(5)


@dataclasses.dataclass(slots=True)
class RequestRecord:
    """One request as measured; times are seconds since its bytes were written, error is None on success.

    ttfb: time to the first body byte; for a chunked body, to its first whole chunk.
    events and complete are only counted for streams: the `data:` lines of the SSE body, and whether it
    contained `data: [DONE]` (OpenAI) or `event: message_stop` (Anthropic).
    """

    status: int = 0
    latency: float = 0.0
    ttfb: float | None = None
    bytes_received: int = 0
    events: int = 0
    complete: bool = False
    error: str | None = None


class ClientConnection(asyncio.Protocol):
    """A keep-alive connection with at most one request in flight, whose response is parsed as bytes arrive."""

    def __init__(self, stream: bool):
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self._buffer = bytearray()
        self._state = HEAD
        self._remaining = 0
        self._record: RequestRecord | None = None
        self._response: asyncio.Future[RequestRecord] | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._sent_at = 0.0
        # A stream's body, kept to be scanned once at its end; the leading newline makes every SSE line,
        # the first one included, start with "\n".
        self._stream_body = bytearray(b"\n")

    def send(self, request: bytes, timeout: float) -> asyncio.Future[RequestRecord]:
        loop = asyncio.get_running_loop()
        self._record = RequestRecord()
        self._response = loop.create_future()
        self._timeout = loop.call_later(timeout, self._fail, "timeout")
        if self.stream:
            self._stream_body = bytearray(b"\n")
        self._sent_at = time.perf_counter()
        self.transport.write(request)
        return self._response

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._record is None:
            # Bytes that answer no request: the connection is out of step and cannot be trusted.
            self.reusable = False
            self.transport.abort()
            return
        self._record.bytes_received += len(data)
        self._buffer += data
        try:
            self._parse()
        except ValueError as error:
            self._fail(f"bad response: {error}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._record is None:
            return
        if self._state == CLOSE_DELIMITED_BODY:
            self._complete()
        elif self._state == HEAD:
            self._fail("connection closed before the response head")
        else:
            self._fail("connection closed before the end of the body")

    # Parsing

    def _parse(self) -> None:
        buffer = self._buffer
        position = 0
        while self._record is not None:
            state = self._state
            if state == CHUNKED_BODY:
                # A chunk is taken whole: SSE chunks are small, and one step per chunk keeps the cost low.
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                size = int(buffer[position:line_end].partition(b";")[0], 16)
                if size == 0:
                    position = line_end + 2
                    self._state = TRAILERS
                    continue
                data_end = line_end + 2 + size
                if len(buffer) < data_end + 2:
                    break
                if buffer[data_end : data_end + 2] != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
                self._body_received(buffer, line_end + 2, data_end)
                position = data_end + 2
            elif state == HEAD:
                head_end = buffer.find(b"\r\n\r\n", position)
                if head_end < 0:
                    break
                head = bytes(buffer[position:head_end])
                position = head_end + 4
                self._read_head(head)
            elif state == TRAILERS:  # header lines up to an empty one
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                if line_end == position:
                    self._complete()
                position = line_end + 2
            else:  # SIZED_BODY or CLOSE_DELIMITED_BODY
                end = len(buffer) if state == CLOSE_DELIMITED_BODY else min(len(buffer), position + self._remaining)
                if end == position:
                    break
                self._body_received(buffer, position, end)
                self._remaining -= end - position
                position = end
                if state == SIZED_BODY and self._remaining == 0:
                    self._complete()
        del buffer[:position]
        if self._record is None and buffer:
            self.reusable = False  # the server sent more than the response it announced

    def _read_head(self, head: bytes) -> None:
        if not head.startswith(b"HTTP/1."):
            raise ValueError("not an HTTP/1.x status line")
        status = int(head[9:12])
        self._record.status = status
        if not head.startswith(b"HTTP/1.1"):
            self.reusable = False
        content_length = None
        chunked = False
        for name, value in FRAMING_HEADER.findall(head):
            name = name.lower()
            if name == b"content-length":
                content_length = int(value)
                if content_length < 0:
                    raise ValueError("negative Content-Length")
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif b"close" in value.lower():
                self.reusable = False
        if chunked:
            self._state = CHUNKED_BODY
        elif content_length:
            self._state = SIZED_BODY
            self._remaining = content_length
        elif content_length == 0 or status in (204, 304):
            self._complete()
        else:
            self._state = CLOSE_DELIMITED_BODY
            self.reusable = False

    def _body_received(self, buffer: bytearray, start: int, end: int) -> None:
        if self._record.ttfb is None:
            self._record.ttfb = time.perf_counter() - self._sent_at
        if self.stream:
            self._stream_body += buffer[start:end]

    # Ending the request

    def _complete(self, error: str | None = None) -> None:
        record = self._record
        record.latency = time.perf_counter() - self._sent_at
        if self.stream:
            record.events = self._stream_body.count(SSE_DATA_LINE)
            record.complete = any(stream_end in self._stream_body for stream_end in SSE_STREAM_ENDS)
        if error is None:
            if not 200 <= record.status < 300:
                error = f"status {record.status}"
            elif self.stream and not record.complete:
                error = "incomplete stream"
        record.error = error
        if record.ttfb is None:
            record.ttfb = record.latency
        self._timeout.cancel()
        self._response.set_result(record)
        self._record = self._response = None
        self._state = HEAD

    def _fail(self, reason: str) -> None:
        self.reusable = False
        self.transport.abort()
        self._complete(reason)


@dataclasses.dataclass
class LoadResult:
    """Outcome of a run. requests and requests_per_second count errors too; the latency and TTFB percentiles
    are in milliseconds, over successful requests only."""

    requests: int
    errors: int
    error_reasons: Counter[str]
    wall_seconds: float
    requests_per_second: float
    latency_ms: dict[str, float | None]
    ttfb_ms: dict[str, float | None]
    records: list[RequestRecord] = dataclasses.field(repr=False)

    @classmethod
    def from_records(cls, records: list[RequestRecord], wall_seconds: float) -> LoadResult:
        successes = [record for record in records if record.error is None]
        error_reasons = Counter(record.error for record in records if record.error is not None)
        return cls(
            requests=len(records),
            errors=len(records) - len(successes),
            error_reasons=error_reasons,
            wall_seconds=wall_seconds,
            requests_per_second=len(records) / wall_seconds if wall_seconds else 0.0,
            latency_ms=percentiles_ms([record.latency for record in successes]),
            ttfb_ms=percentiles_ms([record.ttfb for record in successes]),
            records=records,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_reasons": dict(self.error_reasons),
            "wall_seconds": round(self.wall_seconds, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "latency_ms": self.latency_ms,
            "ttfb_ms": self.ttfb_ms,
            "bytes_received": sum(record.bytes_received for record in self.records),
            "stream_events": sum(record.events for record in self.records),
        }


def percentiles_ms(seconds: list[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles and the maximum, in milliseconds; None when there are no values."""
    ordered = sorted(seconds)
    if not ordered:
        return dict.fromkeys([*PERCENTILES, "max"])
    result = {name: ordered[math.ceil(fraction * len(ordered)) - 1] for name, fraction in PERCENTILES.items()}
    result["max"] = ordered[-1]
    return {name: round(value * 1000, 3) for name, value in result.items()}


def request_bytes(target: urllib.parse.SplitResult, body: bytes, headers: dict[str, str]) -> bytes:
    path = target.path or "/"
    if target.query:
        path += "?" + target.query
    fields = {"host": ("Host", target.netloc), "content-type": ("Content-Type", "application/json")}
    fields.update((name.lower(), (name, value)) for name, value in headers.items())
    fields["content-length"] = ("Content-Length", str(len(body)))
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.values())
    return head.encode("latin-1") + b"\r\n" + body


def open_file_limit_raise() -> None:
    """Each connection is a file descriptor; the usual soft limit of 1024 is too low for 1,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    total_requests: int | None = None,
    duration_seconds: float | None = None,
    stream: bool = False,
    connect_timeout: float = 10,
    request_timeout: float = 120,
) -> LoadResult:
    """POST `body` to `url` from `concurrency` keep-alive connections until `total_requests` have been sent
    or `duration_seconds` have passed, whichever comes first.

    stream: the responses are SSE streams; one that does not end with `data: [DONE]` or
    `event: message_stop` counts as an error ("incomplete stream").
    """
    if total_requests is None and duration_seconds is None:
        raise ValueError("give total_requests, duration_seconds or both")
    target = urllib.parse.urlsplit(url)
    if target.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    open_file_limit_raise()
    request = request_bytes(target, body, headers)
    loop = asyncio.get_running_loop()
    records: list[RequestRecord] = []
    unclaimed = total_requests
    started = time.perf_counter()
    deadline = None if duration_seconds is None else started + duration_seconds

    def request_claim() -> bool:
        nonlocal unclaimed
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        if unclaimed is not None:
            if unclaimed <= 0:
                return False
            unclaimed -= 1
        return True

    async def worker() -> None:
        connection: ClientConnection | None = None
        while request_claim():
            if connection is None or not connection.reusable:
                if connection is not None:
                    connection.transport.close()
                    connection = None
                try:
                    async with asyncio.timeout(connect_timeout):
                        _, connection = await loop.create_connection(
                            lambda: ClientConnection(stream), target.hostname, target.port or 80
                        )
                except OSError as error:
                    records.append(RequestRecord(error=f"connect: {type(error).__name__}"))
                    continue
            records.append(await connection.send(request, request_timeout))
        if connection is not None:
            connection.transport.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult.from_records(records, time.perf_counter() - started)


def run_load_sync(*args: Any, **kwargs: Any) -> LoadResult:
    """run_load in a new event loop."""
    return asyncio.run(run_load(*args, **kwargs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.partition("\n")[0])
    parser.add_argument("--url", required=True, help="http:// URL to POST to")
    parser.add_argument("--concurrency", type=int, required=True, help="number of keep-alive connections")
    parser.add_argument("--requests", type=int, help="total number of requests")
    parser.add_argument("--duration", type=float, help="stop starting requests after this many seconds")
    parser.add_argument(
        "--stream",
        action="store_true",
        help='set "stream": true in the body and count streams without data: [DONE] / event: message_stop as errors',
    )
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="repeatable")
    parser.add_argument("--body", required=True, help="JSON object to send")
    parser.add_argument("--connect-timeout", type=float, default=10)
    parser.add_argument("--request-timeout", type=float, default=120)
    args = parser.parse_args(argv)

    if args.requests is None and args.duration is None:
        parser.error("give --requests, --duration or both")
    try:
        payload = json.loads(args.body)
    except json.JSONDecodeError as error:
        parser.error(f"--body is not JSON: {error}")
    if not isinstance(payload, dict):
        parser.error("--body must be a JSON object")
    if args.stream:
        payload["stream"] = True
    headers = {}
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            parser.error(f"--header must look like 'NAME: VALUE', got {header!r}")
        headers[name.strip()] = value.strip()

    result = run_load_sync(
        args.url,
        json.dumps(payload).encode(),
        headers,
        args.concurrency,
        total_requests=args.requests,
        duration_seconds=args.duration,
        stream=args.stream,
        connect_timeout=args.connect_timeout,
        request_timeout=args.request_timeout,
    )
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
