"""Tests of the load generator against the real mock provider."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from unittest import mock

import pytest

from bench.loadgen import ClientConnection, RequestRecord, main, run_load_sync
from tests.mock_provider.fixture import mock_provider  # noqa: F401  (pytest fixture)

# An OpenAI stream of N content chunks has N + 3 data events: the role chunk, the content chunks, the
# finish chunk and "data: [DONE]".
DEFAULT_CONTENT_CHUNKS = 20
OPENAI_FRAMING_EVENTS = 3


def parse_in_pieces(
    response: bytes, piece_size: int, stream: bool, then_close: bool = False
) -> tuple[RequestRecord, bool]:
    """Feed a response to a connection piece_size bytes at a time; return its record and whether it is reusable."""

    async def parse() -> tuple[RequestRecord, bool]:
        connection = ClientConnection(stream)
        connection.connection_made(mock.Mock())  # a transport that discards writes
        measured = connection.send(b"", timeout=5)
        for start in range(0, len(response), piece_size):
            connection.data_received(response[start : start + piece_size])
        if then_close:
            connection.connection_lost(None)
        return measured.result(), connection.reusable

    return asyncio.run(parse())


def chat_url(provider) -> str:
    return f"{provider.openai_base_url}/chat/completions"


def chat_body(model: str, stream: bool = False) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()


def test_non_stream_requests_are_counted_with_latencies(mock_provider):
    result = run_load_sync(chat_url(mock_provider), chat_body("mock-gpt"), {}, concurrency=4, total_requests=40)

    assert (result.requests, result.errors) == (40, 0)
    assert all(record.status == 200 and record.bytes_received > 0 for record in result.records)
    latency = result.latency_ms
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert result.requests_per_second > 0
    assert result.summary()["requests"] == 40


def test_headers_are_sent(mock_provider):
    run_load_sync(
        chat_url(mock_provider), chat_body("mock-gpt"), {"Authorization": "Bearer sk-test"}, 1, total_requests=1
    )

    assert mock_provider.stats()["last_headers"]["authorization"] == "Bearer sk-test"


def test_stream_completes_with_all_events_and_first_byte_before_the_end(mock_provider):
    result = run_load_sync(
        chat_url(mock_provider), chat_body("mock-stream-delay-5", stream=True), {}, 2, total_requests=4, stream=True
    )

    assert (result.requests, result.errors) == (4, 0)
    for record in result.records:
        assert record.complete
        assert record.events == DEFAULT_CONTENT_CHUNKS + OPENAI_FRAMING_EVENTS
        assert record.ttfb < record.latency
    assert result.ttfb_ms["p50"] < result.latency_ms["p50"]


def test_anthropic_stream_completes_at_message_stop(mock_provider):
    body = {"model": "claude-haiku-4-5", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}

    result = run_load_sync(
        f"{mock_provider.base_url}/v1/messages", json.dumps(body).encode(), {}, 2, total_requests=4, stream=True
    )

    assert (result.requests, result.errors) == (4, 0)
    assert all(record.complete for record in result.records)


def test_error_status_counts_as_error(mock_provider):
    result = run_load_sync(chat_url(mock_provider), chat_body("mock-error-500"), {}, 2, total_requests=6)

    assert (result.requests, result.errors) == (6, 6)
    assert result.error_reasons == Counter({"status 500": 6})
    assert result.latency_ms["p50"] is None


def test_cut_stream_counts_as_incomplete_and_the_connection_is_reopened(mock_provider):
    result = run_load_sync(
        chat_url(mock_provider), chat_body("mock-cut-3", stream=True), {}, 2, total_requests=6, stream=True
    )

    assert (result.requests, result.errors) == (6, 6)
    assert result.error_reasons == Counter({"connection closed before the end of the body": 6})
    assert all(record.events == 3 and not record.complete for record in result.records)


def test_json_answer_to_a_stream_run_is_an_incomplete_stream(mock_provider):
    result = run_load_sync(chat_url(mock_provider), chat_body("mock-gpt"), {}, 1, total_requests=2, stream=True)

    assert result.error_reasons == Counter({"incomplete stream": 2})


def test_request_timeout(mock_provider):
    result = run_load_sync(
        chat_url(mock_provider), chat_body("mock-hang"), {}, 2, total_requests=2, request_timeout=0.2
    )

    assert result.error_reasons == Counter({"timeout": 2})


def test_refused_connection_counts_as_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = run_load_sync(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", {}, 2, total_requests=3)

    assert result.error_reasons == Counter({"connect: ConnectionRefusedError": 3})


def test_duration_stops_starting_requests(mock_provider):
    result = run_load_sync(chat_url(mock_provider), chat_body("mock-slow-100"), {}, 4, duration_seconds=0.5)

    assert result.errors == 0
    assert 4 <= result.requests <= 4 * 6
    assert result.wall_seconds < 1.5


def test_concurrent_slow_requests_overlap(mock_provider):
    result = run_load_sync(chat_url(mock_provider), chat_body("mock-slow-300"), {}, 200, total_requests=200)

    assert (result.requests, result.errors) == (200, 0)
    assert result.latency_ms["p50"] >= 300
    assert result.wall_seconds < 200 * 0.3 / 10


def test_thousand_concurrent_slow_streams(mock_provider):
    result = run_load_sync(
        chat_url(mock_provider), chat_body("mock-slow-2000", stream=True), {}, 1000, total_requests=1000, stream=True
    )

    assert (result.requests, result.errors) == (1000, 0)
    assert result.ttfb_ms["p50"] >= 2000
    assert result.wall_seconds < 10


def test_cli_prints_the_summary_as_json(mock_provider, capsys):
    main([
        "--url", chat_url(mock_provider), "--concurrency", "2", "--requests", "4", "--stream",
        "--header", "x-test: cli", "--body", '{"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}',
    ])

    summary = json.loads(capsys.readouterr().out)
    assert (summary["requests"], summary["errors"]) == (4, 0)
    stats = mock_provider.stats()
    assert stats["last_headers"]["x-test"] == "cli"
    assert stats["last_body"]["stream"] is True


@pytest.mark.parametrize("piece_size", [1, 7, 10_000])
def test_chunked_stream_is_parsed_however_it_is_split(piece_size):
    events = [b'data: {"n": 1}\n\n', b'event: ping\ndata: {"n": 2}\n\n', b"data: [DONE]\n\n"]
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x;name=value\r\n%b\r\n" % (len(events[0]), events[0])
        + b"".join(b"%x\r\n%b\r\n" % (len(event), event) for event in events[1:])
        + b"0\r\nx-trailer: 1\r\n\r\n"
    )

    record, reusable = parse_in_pieces(response, piece_size, stream=True)

    assert (record.status, record.error, record.events, record.complete) == (200, None, 3, True)
    assert record.bytes_received == len(response)
    assert reusable


@pytest.mark.parametrize("piece_size", [1, 10_000])
def test_content_length_body_with_connection_close(piece_size):
    response = b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"ok": true}'

    record, reusable = parse_in_pieces(response, piece_size, stream=False)

    assert (record.status, record.error) == (200, None)
    assert not reusable


def test_close_delimited_body_ends_with_the_connection():
    record, _ = parse_in_pieces(b"HTTP/1.0 200 OK\r\n\r\n{}", 10_000, stream=False, then_close=True)

    assert (record.status, record.error) == (200, None)


def test_malformed_chunk_is_a_bad_response():
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"

    record, reusable = parse_in_pieces(response, 10_000, stream=False)

    assert record.error == "bad response: chunk data not followed by CRLF"
    assert not reusable
