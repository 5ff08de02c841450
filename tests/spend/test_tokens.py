"""Token counting offline with the bundled cl100k_base, and the worst case a request can cost."""
import time
from decimal import Decimal

import orjson
import pytest

from proxy import tokens
from proxy.routing import Route
from spend import pricing


def route(**options) -> Route:
    fields = dict(deployment_id="d", deployment_name="d", provider_kind="openai", base_url="http://x", upstream_model="m",
                  api_version="", api_key=None, region="us", hipaa_eligible=False, timeout_seconds=10,
                  price_input_per_mtok=Decimal("2.5"), price_output_per_mtok=Decimal(10),
                  price_embedding_per_mtok=Decimal("0.02"), max_output_tokens=None, position=0, weight=1)
    return Route(**{**fields, **options})


def test_counts_match_the_published_cl100k_base_encoding():
    assert tokens.text_tokens("hello world") == 2
    assert tokens.text_tokens("tiktoken is great!") == 6  # the example in tiktoken's README
    assert tokens.text_tokens("") == 0


def test_chat_prompts_count_messages_system_tools_and_framing():
    plain = tokens.chat_prompt_tokens({"messages": [{"role": "user", "content": "Hi"}]})
    assert plain == 3 + 3 + 3  # "user\nHi", one message, the reply priming
    parts = tokens.chat_prompt_tokens({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    assert parts == plain
    with_system = tokens.chat_prompt_tokens({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})
    assert with_system > plain
    with_tools = tokens.chat_prompt_tokens({"messages": [{"role": "user", "content": "Hi"}],
                                            "tools": [{"type": "function", "function": {"name": "weather"}}]})
    assert with_tools > plain


def test_embedding_inputs_of_every_shape():
    assert tokens.embedding_input_tokens("hello world") == 2
    assert tokens.embedding_input_tokens(["hello world", "hello"]) == 3
    assert tokens.embedding_input_tokens([15339, 1917]) == 2
    assert tokens.embedding_input_tokens([[15339, 1917], [15339]]) == 3


def test_streamed_text_is_counted_from_either_providers_events():
    openai = [orjson.dumps({"choices": [{"delta": {"content": "hello"}}]}),
              orjson.dumps({"choices": [{"delta": {"content": " world"}}]}), b"[DONE]", b"{garbage"]
    anthropic = [orjson.dumps({"type": "message_start", "message": {}}),
                 orjson.dumps({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hello world"}})]
    assert tokens.streamed_text_tokens(openai, anthropic=False) == 2
    assert tokens.streamed_text_tokens(anthropic, anthropic=True) == 2


def test_counting_a_long_prompt_is_cheap():
    body = {"messages": [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 400}]}
    tokens.chat_prompt_tokens(body)
    started = time.perf_counter()
    for _ in range(20):
        tokens.chat_prompt_tokens(body)
    assert (time.perf_counter() - started) / 20 < 0.02  # 4,000 words well under 20 ms


@pytest.mark.parametrize("body,anthropic_client,options,expected", [
    ({"max_tokens": 100}, False, {}, 100),
    ({"max_completion_tokens": 50, "max_tokens": 100}, False, {}, 50),
    ({}, False, {"max_output_tokens": 4096}, 4096),
    ({}, False, {}, 262144),  # no cap anywhere: the gateway's own limit is reserved, never skipped
    ({}, False, {"provider_kind": "anthropic"}, 4096),  # what a translated request asks for
    ({"max_tokens": 7}, True, {"provider_kind": "anthropic"}, 7),
])
def test_the_most_output_a_request_may_produce(body, anthropic_client, options, expected):
    assert pricing.max_output_tokens(route(**options), "chat", body, anthropic_client=anthropic_client) == expected


def test_costs_are_exact_micro_dollars_rounded_up():
    assert pricing.cost_microusd(route(), "chat", 1_000_000, 0) == 2_500_000
    assert pricing.cost_microusd(route(), "chat", 1, 1) == 13  # 2.5 + 10, rounded up
    assert pricing.cost_microusd(route(), "embeddings", 100, 0) == 2
    assert pricing.cost_microusd(route(), "chat", 0, 0) == 0
    assert pricing.route_unpriced(route(price_output_per_mtok=None), "chat")
    assert not pricing.route_unpriced(route(price_output_per_mtok=None), "embeddings")
