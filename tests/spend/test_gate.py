"""The reservation scripts against the real Redis, and the gate in-process: soft-limit alerts, rebuilds."""
import time
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from audit.models import AuditEvent
from config.celery import app as celery_app
from keys.secrets import secret_hash
from proxy.auth import key_grant_for_hash
from proxy.cache import gateway_state_read, redis_client
from proxy.errors import ProxyError
from proxy.routing import org_routing
from spend import gate, services
from spend.models import SpendEntry
from tenants.context import org_context
from tenants.models import Role
from tenants.services import org_update
from tests.conftest import SYSTEM
from tests.spend.conftest import request_id, spend_counters_forget
from tests.tenants.test_webhooks import Receiver

OPEN_KEYS = [f"gatehouse:test:spend-open:{uuid.uuid4().hex}", f"gatehouse:test:spend-open-data:{uuid.uuid4().hex}"]


def reserve_eval(keys: list[str], amount: int, limits: list[int], member: str = "r", now_ms: int = 0, open_keys=OPEN_KEYS):
    return redis_client().eval(gate.RESERVE_SCRIPT, len(keys) + 2, *keys, *open_keys, now_ms, len(keys), amount, 0, 1000,
                               1000, member, *limits)


def reserve(keys: list[str], limit: int, amount: int, member: str = "r", open_keys=OPEN_KEYS) -> str:
    return reserve_eval(keys, amount, [limit] * len(keys), member, open_keys=open_keys)[0].decode()


def settle(keys: list[str], reserved: int, cost: int, member: str = "r", open_keys=OPEN_KEYS) -> None:
    flags = [key + ":soft" for key in keys]
    redis_client().eval(gate.SETTLE_SCRIPT, 2 * len(keys) + 2, *keys, *flags, *open_keys, len(keys), reserved, cost,
                        member, 0, *[-1, 60] * len(keys))


def counters(keys: list[str]) -> list[tuple[int, int]]:
    return [tuple(int(value or 0) for value in redis_client().hmget(key, "settled", "reserved")) for key in keys]


operations = st.lists(st.tuples(st.integers(min_value=0, max_value=10**9), st.floats(min_value=0, max_value=1)),
                      min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(min_value=1, max_value=10**15), budgets=st.integers(min_value=1, max_value=4),
       requests=operations, settle_order=st.randoms(use_true_random=False))
def test_reservations_never_exceed_the_cap_and_settle_to_the_actual_cost(limit, budgets, requests, settle_order):
    keys = [f"gatehouse:test:spend-property:{uuid.uuid4().hex}" for _ in range(budgets)]
    for key in keys:
        redis_client().hset(key, mapping={"settled": 0, "reserved": 0})
    try:
        held, charged = [], 0
        for number, (amount, fraction) in enumerate(requests):
            scaled = amount * limit // 10**9 + 1  # amounts from tiny to above the cap
            used = charged + sum(reserved for reserved, _, _ in held)
            accepted = reserve(keys, limit, scaled, member=str(number)) == "ok"
            assert accepted == (used + scaled <= limit)  # exactly the rule, no rounding drift
            if accepted:
                held.append((scaled, int(scaled * fraction), str(number)))
            for settled, reserved in counters(keys):
                assert settled + reserved <= limit
            if held and settle_order.random() < 0.5:
                reserved, cost, member = held.pop(settle_order.randrange(len(held)))
                settle(keys, reserved, cost, member)
                charged += cost
        for reserved, cost, member in held:
            settle(keys, reserved, cost, member)
            charged += cost
        assert counters(keys) == [(charged, 0)] * budgets
    finally:
        redis_client().delete(*keys)


def test_a_refusal_reserves_nothing_anywhere():
    keys = [f"gatehouse:test:spend-atomic:{uuid.uuid4().hex}" for _ in range(3)]
    for key, used in zip(keys, (0, 0, 90)):
        redis_client().hset(key, mapping={"settled": used, "reserved": 0})
    try:
        answer = reserve_eval(keys, 20, [100, 100, 100])
        assert [part if isinstance(part, int) else part.decode() for part in answer[:2]] == ["budget", 3]
        assert counters(keys) == [(0, 0), (0, 0), (90, 0)]
    finally:
        redis_client().delete(*keys)


def test_a_missing_counter_is_reported_for_rebuild_before_anything_is_reserved():
    present, missing = (f"gatehouse:test:spend-missing:{uuid.uuid4().hex}" for _ in range(2))
    redis_client().hset(present, mapping={"settled": 0, "reserved": 0})
    try:
        answer = reserve_eval([present, missing], 1, [100, 100])
        assert answer[0] == b"missing" and answer[1:] == [2]
        assert counters([present]) == [(0, 0)]
    finally:
        redis_client().delete(present, missing)


def test_an_expired_lease_gives_the_reservation_back_and_a_late_settle_charges_only_the_cost():
    keys = [f"gatehouse:test:spend-lease:{uuid.uuid4().hex}" for _ in range(2)]
    open_keys = [f"gatehouse:test:spend-lease-open:{uuid.uuid4().hex}" for _ in range(2)]
    for key in keys:
        redis_client().hset(key, mapping={"settled": 0, "reserved": 0})
    try:
        assert reserve_eval(keys, 70, [100, 100], member="crashed", now_ms=1_000, open_keys=open_keys)[0] == b"ok"
        assert reserve_eval(keys, 20, [100, 100], member="alive", now_ms=2_000_000, open_keys=open_keys)[0] == b"ok"
        assert reserve(keys, 100, 20, member="third", open_keys=open_keys) == "budget"  # 90 of 100 held
        expire = redis_client().register_script(gate.EXPIRE_SCRIPT)
        assert expire(keys=open_keys, args=[1_000 + gate.LEASE_MS, 100]) == 1  # only the crashed one's lease ran out
        assert counters(keys) == [(0, 20)] * 2
        settle(keys, 70, 5, member="crashed", open_keys=open_keys)  # the process was only slow: its cost counts, its hold is gone already
        settle(keys, 20, 15, member="alive", open_keys=open_keys)
        assert counters(keys) == [(20, 0)] * 2
        assert redis_client().zcard(open_keys[0]) == 0 and redis_client().hlen(open_keys[1]) == 0
    finally:
        redis_client().delete(*keys, *open_keys)


def test_an_expired_lease_frees_a_crashed_holders_share_of_the_budget(spend_org, manual_ledger):
    with org_context(spend_org.org.id):
        services.budget_create(org=spend_org.org, actor=SYSTEM, scope="org", period="none", amount_usd=Decimal("0.00003"))
    reservation, route = _reserve(spend_org)
    assert gate.reservations_expire() == 0  # still inside its lease
    with pytest.raises(ProxyError):
        _reserve(spend_org)
    assert gate.reservations_expire(now_ms=int(time.time() * 1000) + gate.LEASE_MS + 1) >= 1
    again, _ = _reserve(spend_org)  # the crashed holder's amount is free again
    gate.spend_settle(again, route=route, prompt_tokens=9, completion_tokens=10)
    gate.spend_settle(reservation, route=route, prompt_tokens=0, completion_tokens=0)


# In-process: the gate with the org's real grant and routes ------------------------------------

def _reserve(spend_org, alias="gpt", **body):
    generation, _ = gateway_state_read([])
    grant = key_grant_for_hash(secret_hash(spend_org.secret), generation=generation)
    routes = list(org_routing(spend_org.org.id, generation=generation).aliases[alias])
    body = {"model": alias, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10, **body}
    return gate.spend_reserve(grant=grant, generation=generation, request_id=request_id(), endpoint="chat", alias=alias,
                              body=body, end_user="", candidates=routes, anthropic_client=False), routes[0]


@pytest.fixture
def eager_celery():
    """Webhook deliveries run in the test process, at once (Celery's own switch, not a stand-in)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


def test_a_soft_limit_alerts_once_per_period_with_an_audit_event_and_a_webhook(spend_org, manual_ledger, eager_celery):
    receiver = Receiver()
    try:
        with org_context(spend_org.org.id):
            org_update(org=spend_org.org, actor=SYSTEM, acting_role=Role.OWNER, webhook_url=receiver.url)
            budget = services.budget_create(org=spend_org.org, actor=SYSTEM, scope="key", key=spend_org.key,
                                            period="monthly", amount_usd=Decimal("0.001"),
                                            soft_limit_usd=Decimal("0.00005"))
        for _ in range(3):  # 29 µUSD each (9 prompt + 10 output tokens): the second crosses $0.00005
            reservation, route = _reserve(spend_org)
            gate.spend_settle(reservation, route=route, prompt_tokens=9, completion_tokens=10)
        manual_ledger.flush()
        with org_context(spend_org.org.id):
            alerts = list(AuditEvent.objects.filter(action="budget.soft_limit_reached"))
            assert SpendEntry.objects.count() == 3
        assert len(alerts) == 1 and alerts[0].target_id == str(budget.id)
        assert alerts[0].changes["spent_usd"] == [None, "0.000058"]
        [(headers, body)] = receiver.received
        assert headers["x-gatehouse-event"] == "budget.soft_limit_reached"
        assert b'"soft_limit_usd":"0.000050"' in body
    finally:
        receiver.close()


def test_a_lost_counter_is_rebuilt_from_the_ledger_including_rows_not_yet_written(spend_org, manual_ledger):
    with org_context(spend_org.org.id):
        budget = services.budget_create(org=spend_org.org, actor=SYSTEM, scope="team", team=spend_org.team,
                                        period="daily", amount_usd=Decimal("0.0001"))
    for _ in range(2):
        reservation, route = _reserve(spend_org)
        gate.spend_settle(reservation, route=route, prompt_tokens=9, completion_tokens=10)
    spend_counters_forget()  # the two rows are still in this process's buffer
    with pytest.raises(ProxyError) as refused:
        _reserve(spend_org, max_tokens=20)  # 58 spent + 9 + 40 > 100
    assert refused.value.code == "budget_exceeded" and str(budget.id) in refused.value.message
    reservation, route = _reserve(spend_org, max_tokens=5)  # 58 + 19 fits
    assert gate.budget_counter_read(budget_id=str(budget.id), end_user="",
                                    period_start=reservation.budgets[0].period_start) == (58, 19)
    gate.spend_settle(reservation, route=None, prompt_tokens=0, completion_tokens=0)


def test_a_released_reservation_frees_the_budget_and_is_idempotent(spend_org, manual_ledger):
    with org_context(spend_org.org.id):
        services.budget_create(org=spend_org.org, actor=SYSTEM, scope="org", period="none", amount_usd=Decimal("0.00003"))
    reservation, route = _reserve(spend_org)
    with pytest.raises(ProxyError):
        _reserve(spend_org)  # 29 held of 30
    assert gate.spend_settle(reservation, route=None, prompt_tokens=0, completion_tokens=0) == 0
    assert gate.spend_settle(reservation, route=route, prompt_tokens=9, completion_tokens=10) == 0  # already settled
    again, _ = _reserve(spend_org)
    assert again.reserved_microusd == 29
