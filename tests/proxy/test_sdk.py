"""The proxy driven by the official OpenAI and Anthropic SDKs against a live gateway."""
import openai
import pytest

pytestmark = pytest.mark.usefixtures("wired")
USER = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                                "required": ["city"]}}}




def test_openai_chat_to_openai_deployment(oa, provider):
    raw = oa.chat.completions.with_raw_response.create(model="gpt", messages=USER)
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Hello from mock mock-gpt!")
    assert completion.usage.total_tokens > 0
    assert raw.headers["x-gatehouse-deployment"] == "openai-ok"
    assert raw.headers["x-gatehouse-model-alias"] == "gpt"
    assert len(raw.headers["x-request-id"]) == 32
    # The provider got the org's credential, never the client's virtual key.
    headers = provider.stats()["last_headers"]
    assert headers.get("authorization") == "Bearer provider-secret-do-not-leak"


def test_openai_chat_stream(oa):
    stream = oa.chat.completions.create(model="gpt", messages=USER, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from mock mock-gpt!")
    assert chunks[-1].usage.completion_tokens > 0


def test_openai_stream_without_usage_request_gets_no_usage_chunk(oa):
    chunks = list(oa.chat.completions.create(model="gpt", messages=USER, stream=True))
    assert all(chunk.choices for chunk in chunks)


def test_openai_client_to_anthropic_deployment(oa):
    completion = oa.chat.completions.create(model="claude", messages=[{"role": "system", "content": "Be kind."}, *USER])
    assert completion.choices[0].message.content.startswith("Hello from mock mock-claude!")
    assert completion.model == "claude" and completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_openai_client_streams_from_anthropic_deployment(oa):
    chunks = list(oa.chat.completions.create(model="claude", messages=USER, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from mock mock-claude!")
    assert chunks[-1].usage.prompt_tokens > 0


def test_openai_tool_calls_through_anthropic_deployment(oa):
    messages = [{"role": "user", "content": "What's the weather in Oslo?"}]
    completion = oa.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL])
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert "city" in call.function.arguments
    chunks = list(oa.chat.completions.create(model="claude", messages=messages, tools=[WEATHER_TOOL], stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather"
    assert "city" in "".join(d.function.arguments or "" for d in deltas)


def test_anthropic_messages_to_anthropic_deployment(an, provider):
    message = an.messages.create(model="claude", max_tokens=100, messages=USER, system="Be kind.")
    assert message.content[0].text.startswith("Hello from mock mock-claude!")
    assert message.usage.output_tokens > 0
    assert provider.stats()["last_headers"].get("x-api-key") == "provider-secret-do-not-leak"


def test_anthropic_stream(an):
    with an.messages.stream(model="claude", max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello from mock mock-claude!") and final.usage.output_tokens > 0


def test_anthropic_client_to_openai_deployment(an):
    message = an.messages.create(model="gpt", max_tokens=100, messages=USER, system="Be kind.")
    assert message.content[0].text.startswith("Hello from mock mock-gpt!")
    assert message.stop_reason == "end_turn" and message.usage.input_tokens > 0


def test_anthropic_client_streams_from_openai_deployment(an):
    with an.messages.stream(model="gpt", max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello from mock mock-gpt!")
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"


def test_anthropic_tool_use_through_openai_deployment(an):
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    messages = [{"role": "user", "content": "What's the weather in Rome?"}]
    message = an.messages.create(model="gpt", max_tokens=100, messages=messages, tools=tools)
    assert message.stop_reason == "tool_use" and message.content[-1].name == "get_weather"
    with an.messages.stream(model="gpt", max_tokens=100, messages=messages, tools=tools) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "tool_use" and "city" in final.content[-1].input


def test_embeddings(oa):
    result = oa.embeddings.create(model="gpt", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens > 0


def test_embeddings_refused_for_an_anthropic_only_alias(oa):
    with pytest.raises(openai.BadRequestError, match="does not offer embeddings"):
        oa.embeddings.create(model="claude", input="x")


def test_models_lists_only_what_the_key_may_use(gateway_url, wired):
    everything = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=wired.key, max_retries=0)
    assert {"gpt", "claude", "fallback-500"} <= {m.id for m in everything.models.list()}
    narrow = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=wired.narrow_key, max_retries=0)
    assert [m.id for m in narrow.models.list()] == ["gpt"]


def test_azure_and_openai_compatible_deployments(oa, provider):
    assert oa.chat.completions.create(model="azure", messages=USER).choices[0].message.content.startswith("Hello")
    assert provider.stats()["last_headers"].get("api-key") == "provider-secret-do-not-leak"
    assert oa.chat.completions.create(model="compat", messages=USER).choices[0].message.content.startswith("Hello from mock mock-llama")
