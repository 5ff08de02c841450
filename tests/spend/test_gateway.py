"""Budgets and rate limits through the live gateway (two gunicorn worker processes) and the mock provider."""
import concurrent.futures
import json
import time
import zoneinfo
from decimal import Decimal

import pytest
import requests
from django.db.models import Sum
from django.utils import timezone

from proxy.cache import redis_client
from proxy.tokens import text_tokens
from requestlogs.models import RequestLog
from spend import services
from spend.gate import budget_counter_key
from spend.models import SpendEntry, SpendStatus
from spend.periods import period_bounds
from tenants.context import org_context
from tenants.models import Role
from tenants.services import org_update
from tests.conftest import SYSTEM
from tests.spend.conftest import TcpRelay, gateway_start, spend_counters_forget

pytestmark = pytest.mark.timeout(120)
HI = [{"role": "user", "content": "Hi"}]
# The mock answers "Hi" with 7 words and counts 1 prompt word: $1/M in, $2/M out = 15 µUSD. The gateway counts
# 9 prompt tokens (cl100k_base with the chat framing), so with max_tokens=7 it reserves 9 + 7 x 2 = 23 µUSD.
WORST_CASE_MICROUSD = 23
ACTUAL_MICROUSD = 15


def chat(url, secret, alias="gpt", *, max_tokens=7, headers=None, **body):
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return requests.post(f"{url}/v1/chat/completions", json={"model": alias, "messages": HI, **body},
                         headers={"Authorization": f"Bearer {secret}", **(headers or {})}, timeout=30)


def budget(spend_org, *, amount_microusd: int, scope="key", period="daily", **options):
    targets = {"key": {"key": spend_org.key}, "team": {"team": spend_org.team}}.get(scope, {})
    with org_context(spend_org.org.id):
        return services.budget_create(org=spend_org.org, actor=SYSTEM, scope=scope, period=period,
                                      amount_usd=Decimal(amount_microusd).scaleb(-6), **targets, **options)


def rate_limit(spend_org, **limits):
    with org_context(spend_org.org.id):
        return services.rate_limit_create(org=spend_org.org, actor=SYSTEM, scope="key", key=spend_org.key, **limits)


def ledger_rows(org, *, expected: int, timeout: float = 10.0) -> list[SpendEntry]:
    """The org's ledger once the gateway processes have flushed `expected` rows."""
    deadline = time.monotonic() + timeout
    while True:
        with org_context(org.id):
            rows = list(SpendEntry.objects.filter(org=org))
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def counter(spend_org, budget_row, end_user: str = "") -> dict:
    start, _ = period_bounds(budget_row.period, zoneinfo.ZoneInfo(spend_org.org.time_zone), timezone.now())
    values = redis_client().hgetall(budget_counter_key(str(budget_row.id), end_user, start))
    return {name.decode(): int(value) for name, value in values.items()}


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_fifty_concurrent_requests_through_two_processes_never_overspend(gateway_url, spend_org):
    cap = 10 * WORST_CASE_MICROUSD
    key_budget = budget(spend_org, amount_microusd=cap)
    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: chat(gateway_url, spend_org.secret), range(50)))

    accepted = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code != 200]
    assert len(accepted) >= 10  # the budget holds ten worst cases
    assert refused, "a budget of $0.00023 cannot pay for 50 requests"
    assert all(response.status_code == 429 and error_code(response) == "budget_exceeded" for response in refused)
    assert all(str(key_budget.id) in response.json()["error"]["message"] for response in refused)

    rows = ledger_rows(spend_org.org, expected=len(accepted))
    assert len(rows) == len(accepted)
    spent = sum(row.cost_microusd for row in rows)
    assert spent <= cap
    assert all(row.cost_microusd == ACTUAL_MICROUSD and row.status == SpendStatus.SETTLED for row in rows)
    assert counter(spend_org, key_budget) == {"settled": spent, "reserved": 0}


@pytest.mark.parametrize("path,alias,anthropic", [("chat/completions", "cut", False), ("messages", "cut-claude", True)])
def test_a_provider_cut_mid_stream_settles_the_partial_usage_and_releases_the_rest(gateway_url, spend_org, path, alias,
                                                                                   anthropic):
    org_budget = budget(spend_org, scope="org", amount_microusd=1_000_000)
    body = {"model": alias, "messages": [{"role": "user", "content": "Tell me a long story about the sea"}],
            "max_tokens": 500, "stream": True}
    headers = {"x-api-key": spend_org.secret} if anthropic else {"Authorization": f"Bearer {spend_org.secret}"}
    response = requests.post(f"{gateway_url}/v1/{path}", json=body, headers=headers, timeout=30)
    assert response.status_code == 200
    assert b"upstream_stream_cut" in response.content or b"cut off" in response.content

    [row] = ledger_rows(spend_org.org, expected=1)
    assert row.request_id == response.headers["x-request-id"]
    assert row.status == SpendStatus.SETTLED and row.error_code == "upstream_stream_cut"
    assert row.prompt_tokens > 0 and row.completion_tokens > 0  # counted from the streamed text
    assert 0 < row.cost_microusd < row.reserved_microusd
    assert counter(spend_org, org_budget) == {"settled": row.cost_microusd, "reserved": 0}


def test_a_long_cut_stream_is_charged_for_all_its_text_though_the_gateway_keeps_only_the_latest(gateway_url, spend_org):
    # 1,500 one-character chunks (about 250 KB of SSE): the gateway counts and drops what it kept every 64 KB.
    body = {"model": "cut-long", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5000, "stream": True}
    response = requests.post(f"{gateway_url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {spend_org.secret}"}, timeout=60)
    assert response.status_code == 200 and b"upstream_stream_cut" in response.content
    streamed = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in response.text.splitlines() if line.startswith("data: {\"id\""))
    [row] = ledger_rows(spend_org.org, expected=1)
    assert len(streamed) >= 1300  # all but what a guardrail still held back when the stream broke
    # Split words at the 64 KB folds count a few tokens more; text a guardrail held back was streamed to the gateway.
    assert text_tokens(streamed) - 5 <= row.completion_tokens <= text_tokens(streamed) + 40


def test_without_budgets_a_cut_stream_is_still_charged_for_a_prompt_counted_after_the_fact(gateway_url, spend_org):
    body = {"model": "cut", "messages": [{"role": "user", "content": "Tell me a long story about the sea"}],
            "max_tokens": 500, "stream": True}
    response = requests.post(f"{gateway_url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {spend_org.secret}"}, timeout=30)
    assert response.status_code == 200 and b"upstream_stream_cut" in response.content
    [row] = ledger_rows(spend_org.org, expected=1)
    assert row.reserved_microusd == 0  # nothing applied, so nothing was held
    assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.cost_microusd > 0


def test_a_failed_call_releases_its_whole_reservation(gateway_url, spend_org):
    key_budget = budget(spend_org, amount_microusd=1_000)
    response = chat(gateway_url, spend_org.secret, "broken")
    assert response.status_code == 502
    [row] = ledger_rows(spend_org.org, expected=1)
    assert row.status == SpendStatus.RELEASED and row.cost_microusd == 0 and row.error_code == "upstream_error"
    assert row.reserved_microusd == WORST_CASE_MICROUSD
    assert counter(spend_org, key_budget) == {"settled": 0, "reserved": 0}


def test_a_lost_redis_counter_is_rebuilt_from_the_ledger(gateway_url, spend_org):
    key_budget = budget(spend_org, amount_microusd=2 * ACTUAL_MICROUSD + WORST_CASE_MICROUSD - 1)
    assert [chat(gateway_url, spend_org.secret).status_code for _ in range(3)] == [200, 200, 429]
    assert len(ledger_rows(spend_org.org, expected=2)) == 2

    assert spend_counters_forget() > 0
    refused = chat(gateway_url, spend_org.secret)
    assert refused.status_code == 429 and error_code(refused) == "budget_exceeded"
    assert counter(spend_org, key_budget) == {"settled": 2 * ACTUAL_MICROUSD, "reserved": 0}


def test_budgets_of_key_team_org_and_end_user_all_apply(gateway_url, spend_org):
    budget(spend_org, scope="end_user", amount_microusd=ACTUAL_MICROUSD + WORST_CASE_MICROUSD - 1)
    budget(spend_org, scope="team", amount_microusd=1_000)
    budget(spend_org, scope="org", amount_microusd=1_000)
    assert chat(gateway_url, spend_org.secret, user="alice").status_code == 200
    refused = chat(gateway_url, spend_org.secret, user="alice")
    assert refused.status_code == 429 and "end user budget" in refused.json()["error"]["message"]
    assert chat(gateway_url, spend_org.secret, headers={"x-gatehouse-end-user": "bob"}).status_code == 200
    assert chat(gateway_url, spend_org.secret).status_code == 200  # no end user: only key, team and org budgets

    budget(spend_org, scope="team", period="monthly", amount_microusd=10)
    assert chat(gateway_url, spend_org.other_secret).status_code == 200  # another team's budget does not apply
    refused = chat(gateway_url, spend_org.secret)
    assert refused.status_code == 429 and "monthly team budget" in refused.json()["error"]["message"]


def test_a_missing_max_tokens_reserves_the_output_cap(gateway_url, spend_org):
    budget(spend_org, amount_microusd=100_000)  # $0.10: less than 262,144 output tokens at $2/M
    refused = chat(gateway_url, spend_org.secret, max_tokens=None)
    assert refused.status_code == 429 and error_code(refused) == "budget_exceeded"
    assert "$0.5" in refused.json()["error"]["message"]
    assert chat(gateway_url, spend_org.secret, max_tokens=100).status_code == 200


def test_an_unpriced_model_is_refused_unless_the_org_allows_it(gateway_url, spend_org):
    refused = chat(gateway_url, spend_org.secret, "free")  # even with no budget: spend must never go untracked
    assert refused.status_code == 400 and error_code(refused) == "model_unpriced"
    assert "no price" in refused.json()["error"]["message"]
    budget(spend_org, scope="org", amount_microusd=1_000)
    refused = chat(gateway_url, spend_org.secret, "free")
    assert refused.status_code == 400 and error_code(refused) == "model_unpriced"
    with org_context(spend_org.org.id):
        org_update(org=spend_org.org, actor=SYSTEM, acting_role=Role.OWNER, allow_unpriced_models=True)
    assert chat(gateway_url, spend_org.secret, "free").status_code == 200


def test_requests_per_minute_answer_429_with_retry_after(gateway_url, spend_org):
    rate_limit(spend_org, requests_per_minute=2)
    if time.time() % 60 > 55:  # keep the three requests inside one fixed window
        time.sleep(61 - time.time() % 60)
    responses = [chat(gateway_url, spend_org.secret) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 429]
    assert error_code(responses[2]) == "rate_limit_exceeded"
    assert "2 requests per minute" in responses[2].json()["error"]["message"]
    assert 1 <= int(responses[2].headers["Retry-After"]) <= 60
    assert chat(gateway_url, spend_org.other_secret).status_code == 200  # another key is not limited


def test_concurrent_requests_are_limited_across_processes_and_slots_freed(gateway_url, spend_org):
    rate_limit(spend_org, max_concurrent=1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        responses = list(pool.map(lambda _: chat(gateway_url, spend_org.secret, "slow"), range(3)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 429, 429]
    refused = [response for response in responses if response.status_code == 429]
    assert all(error_code(response) == "rate_limit_exceeded" and response.headers["Retry-After"] == "1"
               for response in refused)
    assert chat(gateway_url, spend_org.secret).status_code == 200  # the slot was given back


def test_tokens_per_minute_count_the_worst_case(gateway_url, spend_org):
    rate_limit(spend_org, tokens_per_minute=100)
    refused = chat(gateway_url, spend_org.secret, max_tokens=200)
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]
    assert chat(gateway_url, spend_org.secret, max_tokens=50).status_code == 200


@pytest.mark.parametrize("headers,body,param", [
    ({"x-gatehouse-end-user": "x" * 257}, {}, "x-gatehouse-end-user"),
    ({}, {"user": 42}, "user"),
    ({}, {"user": "tab\tinside"}, "user"),
])
def test_a_bad_end_user_is_refused(gateway_url, spend_org, headers, body, param):
    response = chat(gateway_url, spend_org.secret, headers=headers, **body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_without_redis_the_gateway_fails_closed(test_database_url, spend_org, tmp_path):
    server, url = gateway_start(test_database_url, workers=1, log_path=tmp_path / "gunicorn.log",
                                REDIS_URL="redis://127.0.0.1:1/0")
    try:
        response = chat(url, spend_org.secret)
        assert response.status_code == 503 and error_code(response) == "gateway_unavailable"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_request_log_and_the_ledger_agree_on_cost(gateway_url, spend_org):
    assert chat(gateway_url, spend_org.secret).status_code == 200
    [row] = ledger_rows(spend_org.org, expected=1)
    deadline = time.monotonic() + 10
    while True:
        with org_context(spend_org.org.id):
            logged = RequestLog.objects.filter(request_id=row.request_id).aggregate(cost=Sum("cost_usd"))["cost"]
        if logged is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert logged == Decimal(row.cost_microusd).scaleb(-6)


def test_without_postgresql_a_counter_that_needs_rebuilding_fails_closed(test_database_url, spend_org, tmp_path):
    from urllib.parse import urlsplit, urlunsplit

    database = urlsplit(test_database_url)
    relay = TcpRelay(database.hostname, database.port or 5432)
    relayed_url = urlunsplit(database._replace(netloc=f"{database.netloc.rsplit('@', 1)[0]}@127.0.0.1:{relay.port}"))
    budget(spend_org, amount_microusd=10_000)
    server, url = gateway_start(relayed_url, workers=1, log_path=tmp_path / "gunicorn.log")
    try:
        assert chat(url, spend_org.secret).status_code == 200  # caches the key, routes and budgets
        time.sleep(1)  # the ledger row is written
        relay.cut()
        spend_counters_forget()
        response = chat(url, spend_org.secret)
        assert response.status_code == 503 and error_code(response) == "gateway_unavailable"
        assert "rebuild budget counters" in response.json()["error"]["message"]
        relay.restore()
        statuses = [chat(url, spend_org.secret).status_code for _ in range(10)]
        assert statuses[-1] == 200, statuses  # back once PostgreSQL is (a broken pooled connection fails once)
    finally:
        relay.restore()  # so that the gateway's exit flush does not wait for a connection
        server.terminate()
        server.wait(timeout=30)
        relay.close()
