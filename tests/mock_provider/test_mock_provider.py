"""Tests of the mock LLM provider, driven through the official OpenAI and Anthropic SDKs."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import uuid

import anthropic
import httpx2
import openai
import pytest

from tests.mock_provider.fixture import MockProvider, mock_provider  # noqa: F401  (pytest fixture)

USER_TEXT = "Say hello to the gateway, please, in a friendly way"
MESSAGES = [{"role": "user", "content": USER_TEXT}]
WEATHER_MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]
EXPECTED_TOOL_ARGUMENTS = {"location": "Paris", "unit": "celsius"}
ANTHROPIC_REQUEST = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": MESSAGES}


def expected_reply(model: str, user_text: str = USER_TEXT) -> str:
    return f"Hello from mock {model}! You said: {user_text[:40]}"


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def openai_client(mock_provider):
    with openai.OpenAI(base_url=mock_provider.openai_base_url, api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(mock_provider):
    with anthropic.Anthropic(base_url=mock_provider.base_url, api_key="x", max_retries=0) as client:
        yield client


def unique_scenario() -> str:
    return f"scenario-{uuid.uuid4().hex}"


def wait_until_idle(provider: MockProvider, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = provider.stats()
        if stats["in_flight"] == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def post_json(port: int, path: str, payload: dict, headers: dict[str, str]) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", path, json.dumps(payload), {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post_sse(port: int, path: str, payload: dict, read_bytes: int | None = None) -> bytes:
    """POST over a raw socket with Connection: close; read everything, or only read_bytes, then close."""
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + body)
        received = b""
        while read_bytes is None or len(received) < read_bytes:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    return received


# --- OpenAI chat ------------------------------------------------------------------------------------------


def test_chat_completion(openai_client):
    completion = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    reply = expected_reply("gpt-4o-mini")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == words(USER_TEXT)
    assert completion.usage.completion_tokens == words(reply)
    assert completion.usage.total_tokens == words(USER_TEXT) + words(reply)


def test_chat_stream_has_20_content_chunks(openai_client):
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_pieces = [chunk.choices[0].delta.content for chunk in chunks[1:-1]]
    assert len(content_pieces) == 20
    assert "".join(content_pieces) == expected_reply("gpt-4o-mini")
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_chat_stream_usage_chunk(openai_client):
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == words(USER_TEXT)
    assert usage_chunk.usage.completion_tokens == words(expected_reply("gpt-4o-mini"))
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_chunk_count_from_model_name_and_header(openai_client):
    chunks = list(openai_client.chat.completions.create(model="mock-chunks-5", messages=MESSAGES, stream=True))
    assert len(chunks) == 1 + 5 + 1

    # More chunks than characters: the text is padded with filler words, and usage counts them.
    chunks = list(
        openai_client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-behavior": "chunks-120"},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert len(chunks) == 1 + 120 + 1 + 1
    assert text.startswith(expected_reply("gpt-4o") + " lorem ipsum")
    assert chunks[-1].usage.completion_tokens == words(text)


def test_ordinary_model_named_mock_replies_normally(openai_client):
    completion = openai_client.chat.completions.create(model="mock-model", messages=MESSAGES)
    assert completion.choices[0].message.content == expected_reply("mock-model")


def test_invalid_behaviour_header_is_rejected(openai_client):
    with pytest.raises(openai.BadRequestError, match="x-mock-behavior"):
        openai_client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"x-mock-behavior": "explode"}
        )


# --- Embeddings, models, Azure ----------------------------------------------------------------------------


def test_embeddings(openai_client):
    result = openai_client.embeddings.create(model="text-embedding-3-small", input="hello world")
    assert len(result.data) == 1
    assert len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 2

    batch = openai_client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "other text here"], encoding_format="float"
    )
    assert [item.index for item in batch.data] == [0, 1]
    assert batch.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)
    assert batch.data[0].embedding != batch.data[1].embedding
    assert sum(value * value for value in batch.data[1].embedding) == pytest.approx(1.0)
    assert batch.usage.prompt_tokens == 5

    wide = openai_client.embeddings.create(model="text-embedding-3-small", input=["x"], dimensions=32)
    assert len(wide.data[0].embedding) == 32


def test_models(openai_client):
    model_ids = [model.id for model in openai_client.models.list()]
    assert "gpt-4o-mini" in model_ids
    assert "mock-model" in model_ids


def test_azure_paths_use_the_deployment_as_model(mock_provider):
    mock_provider.reset()
    client = openai.AzureOpenAI(
        azure_endpoint=mock_provider.base_url, api_key="azure-key", api_version="2024-10-21", max_retries=0
    )
    with client:
        completion = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
        embeddings = client.embeddings.create(model="my-embedder", input="hello")
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="mock-error-503", messages=MESSAGES)

    assert completion.choices[0].message.content == expected_reply("my-deployment")
    assert len(embeddings.data[0].embedding) == 8
    stats = mock_provider.stats()
    assert stats["by_path"] == {
        "/openai/deployments/my-deployment/chat/completions": 1,
        "/openai/deployments/my-embedder/embeddings": 1,
        "/openai/deployments/mock-error-503/chat/completions": 1,
    }
    assert stats["last_headers"]["api-key"] == "azure-key"


# --- Anthropic messages -----------------------------------------------------------------------------------


def test_anthropic_message(anthropic_client):
    message = anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, system="Be brief.", messages=MESSAGES
    )

    reply = expected_reply("claude-haiku-4-5")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == reply
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == words(USER_TEXT) + words("Be brief.")
    assert message.usage.output_tokens == words(reply)


def test_anthropic_stream(anthropic_client):
    with anthropic_client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES) as stream:
        event_types = []
        text_pieces = []
        for event in stream:
            event_types.append(event.type)
            if event.type == "content_block_delta":
                text_pieces.append(event.delta.text)
        final = stream.get_final_message()

    reply = expected_reply("claude-haiku-4-5")
    assert len(text_pieces) == 20
    assert "".join(text_pieces) == reply
    assert event_types[0] == "message_start"
    assert event_types[-2:] == ["message_delta", "message_stop"]
    assert final.content[0].text == reply
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == words(USER_TEXT)
    assert final.usage.output_tokens == words(reply)


def test_anthropic_text_stream_helper(anthropic_client):
    with anthropic_client.messages.stream(model="mock-chunks-3", max_tokens=100, messages=MESSAGES) as stream:
        pieces = list(stream.text_stream)
    assert pieces and "".join(pieces) == expected_reply("mock-chunks-3")
    assert len(pieces) == 3


def test_anthropic_wire_event_sequence(mock_provider):
    raw = post_sse(
        mock_provider.port,
        "/v1/messages",
        {"model": "mock-chunks-2", "max_tokens": 10, "stream": True, "messages": MESSAGES},
    )
    events = [line.split(b": ", 1)[1].decode() for line in raw.split(b"\n") if line.startswith(b"event: ")]
    assert events == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]


def test_anthropic_requires_max_tokens(mock_provider):
    status, body = post_json(mock_provider.port, "/v1/messages", {"model": "claude", "messages": MESSAGES}, {})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"


# --- Tool calls -------------------------------------------------------------------------------------------


def test_openai_tool_call(openai_client):
    completion = openai_client.chat.completions.create(model="gpt-4o", messages=WEATHER_MESSAGES, tools=OPENAI_TOOLS)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == EXPECTED_TOOL_ARGUMENTS
    assert completion.usage.completion_tokens == words(call.function.arguments)


def test_openai_tool_call_stream(openai_client):
    chunks = list(
        openai_client.chat.completions.create(
            model="mock-chunks-4", messages=WEATHER_MESSAGES, tools=OPENAI_TOOLS, stream=True
        )
    )

    first_call = chunks[0].choices[0].delta.tool_calls[0]
    assert first_call.id and first_call.function.name == "get_weather"
    argument_pieces = [chunk.choices[0].delta.tool_calls[0].function.arguments for chunk in chunks[1:-1]]
    assert len(argument_pieces) == 4
    assert json.loads("".join(argument_pieces)) == EXPECTED_TOOL_ARGUMENTS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_tool_result_turn_gets_a_text_reply(openai_client):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        *WEATHER_MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    completion = openai_client.chat.completions.create(model="gpt-4o", messages=messages, tools=OPENAI_TOOLS)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == expected_reply("gpt-4o", WEATHER_MESSAGES[0]["content"])


def test_anthropic_tool_result_turn_gets_a_text_reply(anthropic_client):
    messages = [
        *WEATHER_MESSAGES,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"}]},
    ]
    message = anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=messages, tools=ANTHROPIC_TOOLS
    )
    assert message.stop_reason == "end_turn"
    assert message.content[0].text == expected_reply("claude-haiku-4-5", "Sunny")


def test_anthropic_tool_use(anthropic_client):
    message = anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=WEATHER_MESSAGES, tools=ANTHROPIC_TOOLS
    )

    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == EXPECTED_TOOL_ARGUMENTS


def test_anthropic_tool_use_stream(anthropic_client):
    with anthropic_client.messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=WEATHER_MESSAGES, tools=ANTHROPIC_TOOLS
    ) as stream:
        delta_types = [event.delta.type for event in stream if event.type == "content_block_delta"]
        final = stream.get_final_message()

    assert delta_types and set(delta_types) == {"input_json_delta"}
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use"
    assert final.content[0].name == "get_weather"
    assert final.content[0].input == EXPECTED_TOOL_ARGUMENTS


# --- Errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_openai_error_statuses(openai_client, status, error_class):
    with pytest.raises(error_class) as raised:
        openai_client.chat.completions.create(model=f"mock-error-{status}", messages=MESSAGES)
    assert raised.value.status_code == status
    assert set(raised.value.body) == {"message", "type", "param", "code"}


def test_openai_error_500_shape(openai_client):
    with pytest.raises(openai.InternalServerError) as raised:
        openai_client.chat.completions.create(model="mock-error-500", messages=MESSAGES, stream=True)
    assert raised.value.body["type"] == "server_error"
    assert raised.value.body["message"] == "Mock error 500"


def test_anthropic_error_500_shape(anthropic_client):
    with pytest.raises(anthropic.InternalServerError) as raised:
        anthropic_client.messages.create(model="mock-error-500", max_tokens=10, messages=MESSAGES)
    assert raised.value.status_code == 500
    assert raised.value.body == {"type": "error", "error": {"type": "api_error", "message": "Mock error 500"}}


def test_rate_limit_has_retry_after(openai_client, anthropic_client):
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="mock-error-429", messages=MESSAGES)
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.body["code"] == "rate_limit_exceeded"

    with pytest.raises(anthropic.RateLimitError) as raised:
        anthropic_client.messages.create(
            model="claude", max_tokens=10, messages=MESSAGES, extra_headers={"x-mock-behavior": "error-429"}
        )
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.body["error"]["type"] == "rate_limit_error"


def test_unknown_path_is_404(openai_client):
    with pytest.raises(openai.NotFoundError):
        openai_client.post("/nowhere", body={}, cast_to=object)


# --- Timing -----------------------------------------------------------------------------------------------


def test_slow(openai_client):
    started = time.monotonic()
    openai_client.chat.completions.create(model="mock-slow-300", messages=MESSAGES)
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    stream = openai_client.chat.completions.create(model="mock-slow-300", messages=MESSAGES, stream=True)
    next(iter(stream))
    assert time.monotonic() - started >= 0.3
    stream.close()


def test_stream_delay(openai_client):
    started = time.monotonic()
    chunks = list(
        openai_client.chat.completions.create(
            model="mock-chunks-5+stream-delay-50", messages=MESSAGES, stream=True
        )
    )
    # 1 role + 5 content + 1 finish chunk + [DONE]: 7 delays between the 8 events.
    assert len(chunks) == 7
    assert time.monotonic() - started >= 7 * 0.05


# --- Broken responses -------------------------------------------------------------------------------------


def test_cut_stream(openai_client, anthropic_client):
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in openai_client.chat.completions.create(model="mock-cut-3", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 3  # the role chunk and 2 content chunks

    # The Anthropic SDK lets the transport error through unwrapped.
    text = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        with anthropic_client.messages.stream(model="mock-cut-5", max_tokens=10, messages=MESSAGES) as stream:
            text.extend(stream.text_stream)
    assert len(text) == 2  # message_start, content_block_start and ping came before


def test_cut_stream_on_the_wire_has_no_terminator(mock_provider):
    raw = post_sse(
        mock_provider.port, "/v1/chat/completions", {"model": "mock-cut-4", "stream": True, "messages": MESSAGES}
    )
    assert raw.count(b"data: ") == 4
    assert b"[DONE]" not in raw
    assert not raw.endswith(b"0\r\n\r\n")


def test_cut_non_stream(openai_client, anthropic_client):
    with pytest.raises(openai.APIConnectionError):
        openai_client.chat.completions.create(model="mock-cut-0", messages=MESSAGES)
    with pytest.raises(anthropic.APIConnectionError):
        anthropic_client.messages.create(model="mock-cut-0", max_tokens=10, messages=MESSAGES)


def test_malformed(openai_client, anthropic_client):
    with pytest.raises(json.JSONDecodeError):
        openai_client.chat.completions.create(model="mock-malformed", messages=MESSAGES)
    with pytest.raises(json.JSONDecodeError):
        anthropic_client.messages.create(model="mock-malformed", max_tokens=10, messages=MESSAGES)

    received = []
    with pytest.raises(json.JSONDecodeError):
        for chunk in openai_client.chat.completions.create(model="mock-malformed", messages=MESSAGES, stream=True):
            received.append(chunk)
    assert len(received) == 1


# --- Scenarios, statistics, authentication ----------------------------------------------------------------


def test_fail_then_ok_counts_per_scenario(mock_provider, openai_client):
    scenario = unique_scenario()
    headers = {"x-mock-scenario": scenario}
    for _ in range(2):
        with pytest.raises(openai.InternalServerError, match="Mock failure"):
            openai_client.chat.completions.create(model="mock-fail-2-then-ok", messages=MESSAGES, extra_headers=headers)
    completion = openai_client.chat.completions.create(
        model="mock-fail-2-then-ok", messages=MESSAGES, extra_headers=headers
    )
    assert completion.choices[0].message.content == expected_reply("mock-fail-2-then-ok")

    # Another scenario has its own counter.
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(
            model="mock-fail-2-then-ok", messages=MESSAGES, extra_headers={"x-mock-scenario": unique_scenario()}
        )
    assert mock_provider.stats()["scenarios"][scenario] == 3

    mock_provider.reset()
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model="mock-fail-2-then-ok", messages=MESSAGES, extra_headers=headers)


def test_fail_then_ok_keyed_by_model_name(mock_provider, anthropic_client):
    mock_provider.reset()
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client.messages.create(model="mock-fail-1-then-ok", max_tokens=10, messages=MESSAGES)
    message = anthropic_client.messages.create(model="mock-fail-1-then-ok", max_tokens=10, messages=MESSAGES)
    assert message.content[0].text == expected_reply("mock-fail-1-then-ok")
    assert mock_provider.stats()["scenarios"] == {"mock-fail-1-then-ok": 2}


def test_stats(mock_provider, openai_client, anthropic_client):
    mock_provider.reset()
    assert mock_provider.stats()["requests"] == 0

    openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="stats-test")
    stats = mock_provider.stats()
    assert stats["last_headers"]["authorization"] == "Bearer x"
    assert stats["last_body"]["user"] == "stats-test"

    anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model="mock-error-500", messages=MESSAGES)
    stats = mock_provider.stats()
    assert stats["requests"] == 3
    assert stats["by_model"] == {"gpt-4o": 1, "claude-haiku-4-5": 1, "mock-error-500": 1}
    assert stats["by_path"] == {"/v1/chat/completions": 2, "/v1/messages": 1}
    assert stats["in_flight"] == 0

    anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    last_headers = mock_provider.stats()["last_headers"]
    # This Anthropic SDK version sends its api_key as a Bearer token, not as x-api-key.
    assert last_headers["authorization"] == "Bearer x"
    assert "anthropic-version" in last_headers

    status, _ = post_json(mock_provider.port, "/v1/messages", ANTHROPIC_REQUEST, {"x-api-key": "raw-key"})
    assert status == 200
    last_headers = mock_provider.stats()["last_headers"]
    assert last_headers["x-api-key"] == "raw-key"
    assert "authorization" not in last_headers


def test_required_key():
    with MockProvider(required_key="right-key") as provider:
        with openai.OpenAI(base_url=provider.openai_base_url, api_key="wrong-key", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as raised:
                client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            assert raised.value.body["code"] == "invalid_api_key"
        with openai.OpenAI(base_url=provider.openai_base_url, api_key="right-key", max_retries=0) as client:
            assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices

        with anthropic.Anthropic(base_url=provider.base_url, api_key="wrong-key", max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError) as raised:
                client.messages.create(model="claude", max_tokens=10, messages=MESSAGES)
            assert raised.value.body["error"]["type"] == "authentication_error"
        with anthropic.Anthropic(base_url=provider.base_url, api_key="right-key", max_retries=0) as client:
            assert client.messages.create(model="claude", max_tokens=10, messages=MESSAGES).content
        assert post_json(provider.port, "/v1/messages", ANTHROPIC_REQUEST, {"x-api-key": "right-key"})[0] == 200
        status, body = post_json(provider.port, "/v1/messages", ANTHROPIC_REQUEST, {"x-api-key": "wrong-key"})
        assert status == 401
        assert body == {"type": "error", "error": {"type": "authentication_error", "message": "Invalid API key"}}

        azure = openai.AzureOpenAI(
            azure_endpoint=provider.base_url, api_key="right-key", api_version="2024-10-21", max_retries=0
        )
        with azure:
            assert azure.embeddings.create(model="embedder", input="hi").data


def test_server_that_fails_to_start_raises_a_clear_error():
    provider = MockProvider(host="256.0.0.1")
    with pytest.raises(RuntimeError, match="did not become ready"):
        provider.start()


# --- Connections ------------------------------------------------------------------------------------------


def test_hang_ends_when_the_client_gives_up(mock_provider, openai_client):
    with pytest.raises(openai.APITimeoutError):
        openai_client.chat.completions.create(model="mock-hang", messages=MESSAGES, timeout=0.3)
    assert wait_until_idle(mock_provider)["in_flight"] == 0


def test_client_disconnect_mid_stream(mock_provider, openai_client):
    partial = post_sse(
        mock_provider.port,
        "/v1/chat/completions",
        {"model": "mock-stream-delay-1000", "stream": True, "messages": MESSAGES},
        read_bytes=1,
    )
    assert partial.startswith(b"HTTP/1.1 200 OK")
    assert wait_until_idle(mock_provider)["in_flight"] == 0
    assert openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices


def test_keep_alive(mock_provider):
    connection = http.client.HTTPConnection("127.0.0.1", mock_provider.port, timeout=5)
    body = json.dumps({"model": "gpt-4o", "messages": MESSAGES})
    for _ in range(3):
        connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["choices"][0]["message"]["content"] == expected_reply("gpt-4o")
        assert response.getheader("connection") == "keep-alive"
    # A stream uses chunked encoding, so the connection stays usable after it.
    connection.request("POST", "/v1/chat/completions", json.dumps({"model": "gpt-4o", "stream": True,
                                                                    "messages": MESSAGES}))
    response = connection.getresponse()
    assert response.read().endswith(b"data: [DONE]\n\n")
    connection.request("GET", "/v1/models")
    assert connection.getresponse().status == 200
    connection.close()


def test_expect_100_continue(mock_provider):
    body = json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", mock_provider.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        response = b""
        while data := sock.recv(65536):
            response += data
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert expected_reply("gpt-4o").encode() in response


@pytest.mark.parametrize(
    ("raw_request", "status_line"),
    [
        (b"GARBAGE\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET /v1/models HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        (b"POST /v1/embeddings HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 501 Not Implemented"),
    ],
)
def test_unparseable_requests_are_refused(mock_provider, openai_client, raw_request, status_line):
    with socket.create_connection(("127.0.0.1", mock_provider.port), timeout=5) as sock:
        sock.sendall(raw_request)
        response = b""
        while data := sock.recv(65536):
            response += data
    assert response.startswith(status_line)
    assert b"connection: close" in response
    assert openai_client.models.list().data


def test_200_concurrent_streams(mock_provider):
    model = "mock-chunks-10+stream-delay-20"

    async def stream_once(client: openai.AsyncOpenAI, index: int) -> str:
        messages = [{"role": "user", "content": f"request {index}"}]
        stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    async def run_all() -> list[str]:
        async with openai.AsyncOpenAI(base_url=mock_provider.openai_base_url, api_key="x", max_retries=0) as client:
            return await asyncio.gather(*(stream_once(client, index) for index in range(200)))

    started = time.monotonic()
    texts = asyncio.run(run_all())
    elapsed = time.monotonic() - started

    assert texts == [expected_reply(model, f"request {index}") for index in range(200)]
    # Each stream takes about 12 x 20 ms; run one after another they would take about 48 s.
    assert elapsed < 15
    assert wait_until_idle(mock_provider)["in_flight"] == 0


def test_1000_concurrent_slow_streams(mock_provider):
    payload = json.dumps(
        {"model": "mock-chunks-5+stream-delay-200", "stream": True, "messages": MESSAGES}
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload

    async def stream_once() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", mock_provider.port)
        writer.write(request)
        response = await reader.read(-1)
        writer.close()
        return response

    async def run_all() -> list[bytes]:
        return await asyncio.gather(*(stream_once() for _ in range(1000)))

    started = time.monotonic()
    responses = asyncio.run(run_all())
    elapsed = time.monotonic() - started

    assert all(response.startswith(b"HTTP/1.1 200 OK") for response in responses)
    assert all(response.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n") for response in responses)
    # Each stream takes 7 x 200 ms = 1.4 s.
    assert elapsed < 10
