import orjson
import pytest

from proxy import translate
from proxy.errors import ProxyError, UntranslatableRequest

TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "Weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_openai_request_to_anthropic_carries_system_tools_and_tool_results():
    body = {
        "model": "alias", "max_tokens": 50, "temperature": 0.2, "stop": "END", "user": "u-1", "stream": True,
        "tools": TOOLS_OPENAI, "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "4C"},
            {"role": "user", "content": "Thanks"},
        ],
    }
    request = translate.openai_request_to_anthropic(body, upstream_model="claude-x", default_max_tokens=4096)
    assert request["model"] == "claude-x" and request["max_tokens"] == 50 and request["stream"] is True
    assert request["system"] == "Be brief.\n\nUse metric."
    assert request["stop_sequences"] == ["END"] and request["metadata"] == {"user_id": "u-1"}
    assert request["tools"] == TOOLS_ANTHROPIC and request["tool_choice"] == {"type": "any"}
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    assert request["messages"][1]["content"] == [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}]
    # The tool result and the next user text merge into one user turn.
    assert request["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "4C"}, {"type": "text", "text": "Thanks"}]


def test_openai_request_without_max_tokens_gets_the_default():
    request = translate.openai_request_to_anthropic(
        {"messages": [{"role": "user", "content": "hi"}]}, upstream_model="m", default_max_tokens=1234)
    assert request["max_tokens"] == 1234 and "system" not in request


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0].content[0]"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0]"),
    ],
)
def test_untranslatable_openai_requests_are_refused(extra, param):
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UntranslatableRequest) as refused:
        translate.openai_request_to_anthropic(body, upstream_model="m", default_max_tokens=10)
    assert refused.value.param == param and refused.value.status == 400


def test_bad_tool_arguments_and_roles_are_invalid_requests():
    bad_arguments = {"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{oops"}}]}]}
    with pytest.raises(ProxyError, match="must be JSON"):
        translate.openai_request_to_anthropic(bad_arguments, upstream_model="m", default_max_tokens=10)
    with pytest.raises(ProxyError, match="Unknown message role"):
        translate.openai_request_to_anthropic({"messages": [{"role": "wizard", "content": "x"}]}, upstream_model="m",
                                              default_max_tokens=10)


def test_image_parts_are_translated_both_ways():
    openai_body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]}
    request = translate.openai_request_to_anthropic(openai_body, upstream_model="m", default_max_tokens=10)
    assert request["messages"][0]["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    back = translate.anthropic_request_to_openai({"max_tokens": 5, **request}, upstream_model="gpt")
    assert back["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_anthropic_response_to_openai_with_tool_call():
    message = {"id": "msg_1", "stop_reason": "tool_use", "usage": {"input_tokens": 7, "output_tokens": 3},
               "content": [{"type": "text", "text": "Checking."},
                           {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]}
    completion = translate.anthropic_response_to_openai(message, model="alias")
    choice = completion["choices"][0]
    assert completion["model"] == "alias" and choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert completion["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_anthropic_request_to_openai_carries_system_tools_and_results():
    body = {
        "model": "alias", "max_tokens": 20, "system": [{"type": "text", "text": "Be brief."}], "stream": True,
        "stop_sequences": ["END"], "tools": TOOLS_ANTHROPIC, "tool_choice": {"type": "tool", "name": "get_weather"},
        "metadata": {"user_id": "u-9"},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Rome"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "20C"}]},
        ],
    }
    request = translate.anthropic_request_to_openai(body, upstream_model="gpt-x")
    assert request["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"city":"Rome"}'
    assert request["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "20C"}
    assert request["tools"] == TOOLS_OPENAI
    assert request["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert request["stop"] == ["END"] and request["user"] == "u-9"
    assert request["stream_options"] == {"include_usage": True}


def test_untranslatable_anthropic_requests_are_refused():
    base = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UntranslatableRequest):
        translate.anthropic_request_to_openai({**base, "top_k": 5}, upstream_model="m")
    with pytest.raises(UntranslatableRequest):
        translate.anthropic_request_to_openai(
            {**base, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, upstream_model="m")


def test_openai_response_to_anthropic():
    completion = {"id": "c1", "choices": [{"message": {"content": "Hi", "tool_calls": [
        {"id": "call_2", "function": {"name": "f", "arguments": '{"a": 1}'}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    message = translate.openai_response_to_anthropic(completion, model="alias")
    assert message["stop_reason"] == "tool_use" and message["usage"] == {"input_tokens": 4, "output_tokens": 2}
    assert message["content"] == [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "call_2", "name": "f", "input": {"a": 1}}]


def test_anthropic_stream_to_openai_chunks():
    translator = translate.AnthropicStreamToOpenAI(model="alias", include_usage=True)
    events = [
        ("message_start", {"message": {"usage": {"input_tokens": 9}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text"}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
        ("content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}),
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
        ("message_stop", {}),
    ]
    chunks = [chunk for event_type, data in events for chunk in translator.feed(event_type, data)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello"
    tool_deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert tool_deltas[0]["function"]["name"] == "f" and tool_deltas[1]["function"]["arguments"] == '{"a":'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}


def test_openai_stream_to_anthropic_events():
    translator = translate.OpenAIStreamToAnthropic(model="alias")
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "Hi "}}]},
        {"choices": [{"delta": {"content": "there"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": ""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    ]
    events = [event for chunk in chunks for event in translator.feed(chunk)] + translator.finish()
    types = [event_type for event_type, _ in events]
    assert types[:2] == ["message_start", "ping"] and types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == 2 and types.count("content_block_stop") == 2
    text = "".join(e["delta"]["text"] for t, e in events if t == "content_block_delta" and e["delta"]["type"] == "text_delta")
    assert text == "Hi there"
    partial = [e["delta"]["partial_json"] for t, e in events if t == "content_block_delta" and e["delta"]["type"] == "input_json_delta"]
    assert orjson.loads("".join(partial)) == {"x": 1}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use" and events[-2][1]["usage"]["output_tokens"] == 4
