"""Retries, fallback chains, cooldown, timeouts, refused connections and cut streams."""
import time

import anthropic
import openai
import pytest
import requests

USER = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def oa(gateway_url, wired):
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=wired.key, max_retries=0, timeout=30)


def model_requests(provider, model: str) -> int:
    return provider.stats()["by_model"].get(model, 0)


def test_falls_back_after_a_500_with_one_retry(oa, provider):
    before = model_requests(provider, "mock-error-500")
    raw = oa.chat.completions.with_raw_response.create(model="fallback-500", messages=USER)
    assert raw.parse().choices[0].message.content.startswith("Hello from mock mock-gpt")
    assert raw.headers["x-gatehouse-deployment"] == "openai-ok"
    assert raw.headers["x-gatehouse-attempts"] == "3"  # the failing deployment twice (one retry), then the fallback
    assert model_requests(provider, "mock-error-500") - before == 2


def test_falls_back_after_a_timeout_to_another_provider(oa):
    started = time.monotonic()
    raw = oa.chat.completions.with_raw_response.create(model="fallback-timeout", messages=USER)
    assert raw.headers["x-gatehouse-deployment"] == "anthropic-ok"
    assert raw.parse().choices[0].message.content.startswith("Hello from mock mock-claude")
    assert time.monotonic() - started < 6  # two 1 s attempts, not the provider's 3 s


def test_falls_back_after_a_refused_connection(oa):
    raw = oa.chat.completions.with_raw_response.create(model="fallback-refused", messages=USER)
    assert raw.headers["x-gatehouse-deployment"] == "openai-ok"


def test_streams_fall_back_before_the_first_byte(oa):
    chunks = list(oa.chat.completions.create(model="fallback-500", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Hello from mock mock-gpt")


def test_malformed_upstream_answer_falls_back(oa):
    assert oa.chat.completions.create(model="malformed", messages=USER).choices[0].message.content.startswith("Hello")


def test_only_failing_deployments_give_502_then_cool_down(oa, provider):
    with pytest.raises(openai.APIStatusError) as first:
        oa.chat.completions.create(model="only-500", messages=USER)
    assert first.value.status_code == 502 and first.value.body["code"] == "upstream_error"
    with pytest.raises(openai.APIStatusError):
        oa.chat.completions.create(model="only-500", messages=USER)
    # Three failures in the window: the deployment is now skipped by every gateway process.
    reached = model_requests(provider, "mock-error-500")
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as cooled:
            oa.chat.completions.create(model="only-500", messages=USER)
        assert cooled.value.status_code == 503 and cooled.value.body["code"] == "deployments_cooling_down"
        assert cooled.value.response.headers["retry-after"] == "30"
    assert model_requests(provider, "mock-error-500") == reached


def test_timeout_only_gives_504(oa):
    with pytest.raises(openai.APIStatusError) as refused:
        oa.chat.completions.create(model="only-slow", messages=USER)
    assert refused.value.status_code == 504 and refused.value.body["code"] == "upstream_timeout"


def test_refused_connection_only_gives_502(oa):
    with pytest.raises(openai.APIStatusError) as refused:
        oa.chat.completions.create(model="only-refused", messages=USER)
    assert refused.value.status_code == 502 and refused.value.body["code"] == "upstream_unreachable"


def test_upstream_rate_limit_is_429_with_retry_after(oa):
    with pytest.raises(openai.RateLimitError) as limited:
        oa.chat.completions.create(model="only-429", messages=USER)
    assert limited.value.response.headers["retry-after"] == "1"


def test_upstream_400_is_the_clients_problem_and_does_not_fall_back(oa, provider):
    before = model_requests(provider, "mock-gpt")
    with pytest.raises(openai.BadRequestError) as rejected:
        oa.chat.completions.create(model="only-400", messages=USER)
    assert rejected.value.body["code"] == "upstream_rejected"
    assert model_requests(provider, "mock-gpt") == before


def test_upstream_credential_rejection_is_502_without_leaking_it(oa):
    with pytest.raises(openai.APIStatusError) as refused:
        oa.chat.completions.create(model="only-401", messages=USER)
    assert refused.value.status_code == 502 and refused.value.body["code"] == "upstream_auth_failed"
    assert "provider-secret" not in refused.value.response.text


def test_cut_openai_stream_ends_with_an_error_event(oa):
    with pytest.raises(openai.APIError, match="cut off"):
        list(oa.chat.completions.create(model="cut", messages=USER, stream=True))


def test_cut_stream_for_an_anthropic_client(gateway_url, wired):
    client = anthropic.Anthropic(base_url=gateway_url, api_key=wired.key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="cut off"):
        with client.messages.stream(model="cut-anthropic", max_tokens=50, messages=USER) as stream:
            "".join(stream.text_stream)


def test_client_disconnect_cancels_the_upstream_call(gateway_url, wired, provider):
    body = {"model": "dribble", "messages": USER, "stream": True}
    with requests.post(f"{gateway_url}/v1/chat/completions", json=body, stream=True, timeout=10,
                       headers={"Authorization": f"Bearer {wired.key}"}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith(b"data: ")
        assert provider.stats()["in_flight"] >= 1
    # The stream would take ten seconds; the provider sees its client go within a moment.
    deadline = time.monotonic() + 5
    while provider.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert provider.stats()["in_flight"] == 0
