"""Budgets and rate limits on the hot path: one Redis round trip to reserve, one to settle.

Before a request is forwarded, `spend_reserve` runs one Lua script that checks every rate limit
(requests and tokens per minute, concurrent requests; key and team) and every budget that applies
(key, team, org, end user) and only then increments all of them: either everything is reserved or
nothing is, so concurrent requests in any number of processes cannot overspend a cap. The
reservation is the worst case (prompt tokens x input price + the most output x output price, over
every deployment the request may be sent to). After the call `spend_settle` charges the actual cost,
releases the rest, corrects the tokens-per-minute window and frees the concurrency slot.

Counters live in Redis under keys that carry the budget period's start, so a new period starts at
zero. PostgreSQL's ledger (`SpendEntry`, one row per request, written by spend/ledger.py after the
response) is the durable record: a missing counter (a new period, a new budget, or Redis lost its
data) is rebuilt from the ledger under a lock before the reservation goes on. Without Redis, or
without PostgreSQL when a rebuild is needed, requests are refused (503): never let through unchecked.

An org's budgets and limits are cached per process (`GenerationCache`), reloaded after any change.
"""
import dataclasses
import datetime
import functools
import hashlib
import logging
import time
import uuid
import zoneinfo

import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Sum
from django.utils import timezone

from proxy.auth import KeyGrant
from proxy.cache import GenerationCache, redis_client
from proxy.errors import ProxyError
from proxy.routing import Route
from proxy.tokens import chat_prompt_tokens, embedding_input_tokens, other_provider_tokens_estimate
from spend import ledger, pricing
from spend.models import END_USER_MAX_LENGTH, Budget, BudgetScope, RateLimit, SpendEntry, SpendStatus, end_user_is_valid
from spend.periods import period_bounds
from spend.tasks import budget_soft_limit_alert_record
from tenants.context import org_context
from tenants.models import Org

logger = logging.getLogger(__name__)

MAX_CACHED_ORGS = 10_000
WINDOW_SECONDS = 60  # fixed one-minute windows for requests and tokens per minute
# A reservation and a concurrency slot are freed when their request ends; the lease only bounds what a
# crashed process leaks: `reservations_expire` (beat) gives back reservations older than this.
LEASE_MS = 15 * 60 * 1000
REAP_BATCH = 500
REBUILD_LOCK_SECONDS = 10
REBUILD_WAIT_SECONDS = 0.02
REBUILD_ATTEMPTS = 250
# Counters outlive their period a little, so that a late settle still finds them.
COUNTER_GRACE_SECONDS = 7 * 24 * 3600

# KEYS: the budget counters, then the rate-limit counters, then the open-reservation index and data.
# ARGV: now_ms, budget count, cost to reserve (µUSD), tokens to reserve, window ttl_ms, lease ms, reservation token,
#       the limit of each budget, then (kind, limit) per rate limit.
# Answers {"ok"}, {"missing", i...} (counters to rebuild first), {"budget", i, used} or {"limit", j, 0}.
RESERVE_SCRIPT = """
local now, budgets, cost, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local window_ttl, lease, member = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local open_index, open_data = KEYS[#KEYS - 1], KEYS[#KEYS]
local limits = #KEYS - 2 - budgets
local missing = {"missing"}
for i = 1, budgets do
  if redis.call("EXISTS", KEYS[i]) == 0 then missing[#missing + 1] = i end
end
if #missing > 1 then return missing end
for i = 1, budgets do
  local counter = redis.call("HMGET", KEYS[i], "settled", "reserved")
  local used = tonumber(counter[1] or "0") + tonumber(counter[2] or "0")
  if used + cost > tonumber(ARGV[7 + i]) then return {"budget", i, tostring(used)} end
end
local a = 8 + budgets
for j = 1, limits do
  local key, kind, limit = KEYS[budgets + j], ARGV[a], tonumber(ARGV[a + 1])
  local used, amount = 0, 1
  if kind == "concurrent" then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", now)
    used = redis.call("ZCARD", key)
  else
    used = tonumber(redis.call("GET", key) or "0")
    if kind == "tpm" then amount = tokens end
  end
  if used + amount > limit then return {"limit", j, 0} end
  a = a + 2
end
for i = 1, budgets do redis.call("HINCRBY", KEYS[i], "reserved", cost) end
if budgets > 0 then
  redis.call("ZADD", open_index, now + lease, member)
  redis.call("HSET", open_data, member, cost .. " " .. table.concat(KEYS, " ", 1, budgets))
end
a = 8 + budgets
for j = 1, limits do
  local key, kind = KEYS[budgets + j], ARGV[a]
  if kind == "concurrent" then
    redis.call("ZADD", key, now + lease, member)
    redis.call("PEXPIRE", key, lease)
  else
    redis.call("INCRBY", key, kind == "tpm" and tokens or 1)
    redis.call("PEXPIRE", key, window_ttl)
  end
  a = a + 2
end
return {"ok"}
"""

# KEYS: the budget counters, their soft-limit flags, the rate-limit counters to give back (tpm, concurrent),
#       then the open-reservation index and data.
# ARGV: budget count, reserved (µUSD), cost (µUSD), reservation token, token correction,
#       then (soft limit or -1, flag ttl seconds) per budget, then the kind of each rate-limit counter.
# A counter that vanished (Redis lost its data) is left to the rebuild from the ledger.
# Answers (1-based index, settled) of each budget whose soft limit this settle crossed first in the period.
SETTLE_SCRIPT = """
local budgets, reserved, cost, member, correction = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local open_index, open_data = KEYS[#KEYS - 1], KEYS[#KEYS]
-- A reservation whose lease ran out was already given back by reservations_expire: charge the cost only.
local still_open = budgets > 0 and redis.call("ZREM", open_index, member) == 1
if still_open then redis.call("HDEL", open_data, member) end
local crossed = {}
for i = 1, budgets do
  local key = KEYS[i]
  if redis.call("EXISTS", key) == 1 then
    if still_open and tonumber(redis.call("HINCRBY", key, "reserved", -tonumber(reserved))) < 0 then
      redis.call("HSET", key, "reserved", 0)
    end
    local settled = tonumber(redis.call("HINCRBY", key, "settled", cost))
    local soft = tonumber(ARGV[4 + 2 * i])
    if soft >= 0 and settled >= soft then
      if redis.call("SET", KEYS[budgets + i], 1, "NX", "EX", ARGV[5 + 2 * i]) then
        crossed[#crossed + 1] = i
        crossed[#crossed + 1] = settled
      end
    end
  end
end
local a = 6 + 2 * budgets
for j = 2 * budgets + 1, #KEYS - 2 do
  if ARGV[a] == "concurrent" then
    redis.call("ZREM", KEYS[j], member)
  elseif redis.call("EXISTS", KEYS[j]) == 1 then
    redis.call("INCRBY", KEYS[j], correction)
  end
  a = a + 1
end
return crossed
"""

# KEYS: the open-reservation index and data. ARGV: now_ms, batch size.
# Gives back the reservations whose lease ran out (their process died before settling); answers how many.
# The counters' names come from the data, not KEYS: fine on a single Redis, which is what Gatehouse uses.
EXPIRE_SCRIPT = """
local expired = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
for _, member in ipairs(expired) do
  local data = redis.call("HGET", KEYS[2], member)
  if data then
    local cost, counter = nil, nil
    for word in string.gmatch(data, "%S+") do
      if cost == nil then cost = tonumber(word)
      elseif redis.call("EXISTS", word) == 1 then
        if tonumber(redis.call("HINCRBY", word, "reserved", -cost)) < 0 then redis.call("HSET", word, "reserved", 0) end
      end
    end
  end
  redis.call("ZREM", KEYS[1], member)
  redis.call("HDEL", KEYS[2], member)
end
return #expired
"""


@functools.cache
def _script(source: str):
    # Sent once, then called by its SHA-1 (EVALSHA): the request carries keys and numbers only.
    return redis_client().register_script(source)


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetRule:
    budget_id: str
    scope: str
    amount_microusd: int
    soft_limit_microusd: int | None
    period: str


@dataclasses.dataclass(frozen=True, slots=True)
class LimitRule:
    limit_id: str
    scope: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_concurrent: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class OrgSpendPolicy:
    time_zone: zoneinfo.ZoneInfo
    allow_unpriced_models: bool
    org_budgets: tuple[BudgetRule, ...]
    team_budgets: dict[str, tuple[BudgetRule, ...]]
    key_budgets: dict[str, tuple[BudgetRule, ...]]
    end_user_budgets: dict[str, tuple[BudgetRule, ...]]
    default_end_user_budgets: tuple[BudgetRule, ...]
    team_limits: dict[str, LimitRule]
    key_limits: dict[str, LimitRule]


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetHold:
    """One budget's share of a reservation: which counter, for which end user and period."""

    rule: BudgetRule
    end_user: str
    counter_key: str
    period_start: datetime.datetime
    period_end: datetime.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class LimitHold:
    rule: LimitRule
    kind: str  # "rpm", "tpm" or "concurrent"
    counter_key: str
    limit: int


@dataclasses.dataclass
class Reservation:
    org_id: uuid.UUID
    team_id: uuid.UUID
    key_id: uuid.UUID
    request_id: str
    token: str  # unique per reservation (request ids may come from clients)
    endpoint: str
    alias: str
    end_user: str
    created_at: datetime.datetime
    prompt_tokens: int | None  # counted before the call; None when no budget or limit needed it
    reserved_tokens: int
    reserved_microusd: int
    budgets: tuple[BudgetHold, ...]
    limits: tuple[LimitHold, ...]
    settled: bool = False


_policies = GenerationCache(max_entries=MAX_CACHED_ORGS)


def _budget_rule(budget: Budget) -> BudgetRule:
    return BudgetRule(budget_id=str(budget.id), scope=budget.scope, amount_microusd=budget.amount_microusd,
                      soft_limit_microusd=budget.soft_limit_microusd, period=budget.period)


def _limit_rule(limit: RateLimit) -> LimitRule:
    return LimitRule(limit_id=str(limit.id), scope=limit.scope, requests_per_minute=limit.requests_per_minute,
                     tokens_per_minute=limit.tokens_per_minute, max_concurrent=limit.max_concurrent)


def _policy_load(org_id: uuid.UUID) -> OrgSpendPolicy:
    grouped: dict[str, dict[str, list[BudgetRule]]] = {scope: {} for scope in BudgetScope.values}
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        for budget in Budget.objects.order_by("created_at", "id"):
            target = {BudgetScope.KEY: budget.key_id, BudgetScope.TEAM: budget.team_id,
                      BudgetScope.END_USER: budget.end_user}.get(budget.scope, "")
            grouped[budget.scope].setdefault(str(target or ""), []).append(_budget_rule(budget))
        limits = list(RateLimit.objects.all())
    end_users = {name: tuple(rules) for name, rules in grouped[BudgetScope.END_USER].items()}
    return OrgSpendPolicy(
        time_zone=zoneinfo.ZoneInfo(org.time_zone), allow_unpriced_models=org.allow_unpriced_models,
        org_budgets=tuple(grouped[BudgetScope.ORG].get("", ())),
        team_budgets={team: tuple(rules) for team, rules in grouped[BudgetScope.TEAM].items()},
        key_budgets={key: tuple(rules) for key, rules in grouped[BudgetScope.KEY].items()},
        end_user_budgets={name: rules for name, rules in end_users.items() if name},
        default_end_user_budgets=end_users.get("", ()),
        team_limits={str(limit.team_id): _limit_rule(limit) for limit in limits if limit.team_id},
        key_limits={str(limit.key_id): _limit_rule(limit) for limit in limits if limit.key_id},
    )


def org_spend_policy(org_id: uuid.UUID, *, generation: int) -> OrgSpendPolicy:
    try:
        return _policies.get(org_id, generation, _policy_load)
    except DatabaseError:
        raise ProxyError(503, "The gateway cannot reach its database; try again shortly.", code="gateway_unavailable") from None


def spend_key_prefix() -> str:
    return f"gatehouse:{settings.DATABASES['default']['NAME']}:spend"


def _open_reservation_keys() -> list[str]:
    return [f"{spend_key_prefix()}:open", f"{spend_key_prefix()}:open:data"]


def reservations_expire(*, now_ms: int | None = None) -> int:
    """Gives back reservations held longer than the lease (a process died mid-request); returns how many."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    expired = 0
    while True:
        batch = _script(EXPIRE_SCRIPT)(keys=_open_reservation_keys(), args=[now_ms, REAP_BATCH])
        expired += batch
        if batch < REAP_BATCH:
            return expired


def budget_counter_key(budget_id: str, end_user: str, period_start: datetime.datetime) -> str:
    subject = hashlib.sha256(end_user.encode()).hexdigest()[:32] if end_user else "-"
    return f"{spend_key_prefix()}:budget:{budget_id}:{subject}:{int(period_start.timestamp())}"


_periods: dict[tuple[str, str], tuple[datetime.datetime, datetime.datetime | None]] = {}


def _current_period(period: str, zone: zoneinfo.ZoneInfo, now: datetime.datetime):
    """`period_bounds`, computed once per period, zone and process while `now` stays inside it."""
    bounds = _periods.get((period, zone.key))
    if bounds is None or now < bounds[0] or (bounds[1] is not None and now >= bounds[1]):
        bounds = _periods[(period, zone.key)] = period_bounds(period, zone, now)
    return bounds


def _budget_holds(policy: OrgSpendPolicy, grant: KeyGrant, end_user: str, now: datetime.datetime) -> tuple[BudgetHold, ...]:
    applying = [(rule, "") for rule in policy.key_budgets.get(str(grant.key_id), ())]
    applying += [(rule, "") for rule in policy.team_budgets.get(str(grant.team_id), ())]
    applying += [(rule, "") for rule in policy.org_budgets]
    if end_user:
        # A budget naming this end user replaces the default per-end-user budgets.
        rules = policy.end_user_budgets.get(end_user) or policy.default_end_user_budgets
        applying += [(rule, end_user) for rule in rules]
    holds = []
    for rule, subject in applying:
        start, end = _current_period(rule.period, policy.time_zone, now)
        holds.append(BudgetHold(rule=rule, end_user=subject, counter_key=budget_counter_key(rule.budget_id, subject, start),
                                period_start=start, period_end=end))
    return tuple(holds)


def _limit_holds(policy: OrgSpendPolicy, grant: KeyGrant, window: int) -> tuple[LimitHold, ...]:
    holds = []
    for rule in (policy.key_limits.get(str(grant.key_id)), policy.team_limits.get(str(grant.team_id))):
        if rule is None:
            continue
        base = f"{spend_key_prefix()}:limit:{rule.limit_id}"
        if rule.requests_per_minute is not None:
            holds.append(LimitHold(rule, "rpm", f"{base}:rpm:{window}", rule.requests_per_minute))
        if rule.tokens_per_minute is not None:
            holds.append(LimitHold(rule, "tpm", f"{base}:tpm:{window}", rule.tokens_per_minute))
        if rule.max_concurrent is not None:
            holds.append(LimitHold(rule, "concurrent", f"{base}:concurrent", rule.max_concurrent))
    return tuple(holds)


def _unpriced_refuse(candidates: list[Route], endpoint: str, *, allow_unpriced: bool) -> None:
    # A cost that cannot be computed is never skipped, whether or not a budget applies yet (one added
    # later must not find untracked spend): refused unless the org opted in.
    if allow_unpriced:
        return
    for route in candidates:
        if pricing.route_unpriced(route, endpoint):
            raise ProxyError(
                400, f"Deployment '{route.deployment_name}' has no price, so this request's cost cannot be checked "
                     "against its budgets; an admin must price it or allow unpriced models for the org.",
                code="model_unpriced", param="model")


def _worst_case(candidates: list[Route], endpoint: str, body: dict, prompt_tokens: int, *,
                anthropic_client: bool, allow_unpriced: bool) -> tuple[int, int]:
    """(µUSD, tokens): the most any candidate deployment could cost and produce."""
    _unpriced_refuse(candidates, endpoint, allow_unpriced=allow_unpriced)
    worst_cost = worst_tokens = 0
    for route in candidates:
        tokens = other_provider_tokens_estimate(prompt_tokens) if route.speaks_anthropic else prompt_tokens
        output = pricing.max_output_tokens(route, endpoint, body, anthropic_client=anthropic_client)
        worst_cost = max(worst_cost, pricing.cost_microusd(route, endpoint, tokens, output))
        worst_tokens = max(worst_tokens, tokens + output)
    return worst_cost, worst_tokens


def prompt_tokens_count(endpoint: str, body: dict) -> int:
    return embedding_input_tokens(body.get("input")) if endpoint == "embeddings" else chat_prompt_tokens(body)


def spend_prompt_tokens(reservation: Reservation, body: dict) -> int:
    """The prompt's tokens as counted before the call (now, if nothing needed them then)."""
    if reservation.prompt_tokens is None:
        reservation.prompt_tokens = prompt_tokens_count(reservation.endpoint, body)
    return reservation.prompt_tokens


def request_end_user(header: str | None, body: dict) -> str:
    """The end user a request is made for: the x-gatehouse-end-user header, else the body's `user`
    (OpenAI) or `metadata.user_id` (Anthropic); "" when none. At most 256 printable characters."""
    if header is not None:
        value, param = header, "x-gatehouse-end-user"
    elif body.get("user") is not None:
        value, param = body["user"], "user"
    else:
        metadata = body.get("metadata")
        value, param = (metadata.get("user_id") if isinstance(metadata, dict) else None), "metadata.user_id"
    if value is None:
        return ""
    if not end_user_is_valid(value):
        raise ProxyError(400, f"'{param}' must be a text of at most {END_USER_MAX_LENGTH} printable characters.",
                         code="invalid_request", param=param)
    return value


def _redis_unavailable() -> ProxyError:
    return ProxyError(503, "The gateway cannot reach Redis to check budgets and rate limits; try again shortly.",
                      code="gateway_unavailable")


def _counter_ttl_seconds(hold: BudgetHold, now: datetime.datetime) -> int:
    if hold.period_end is None:
        return 0
    return int((hold.period_end - now).total_seconds()) + COUNTER_GRACE_SECONDS


def ledger_spent_microusd(*, org_id, scope: str, target: str, end_user: str, start: datetime.datetime,
                          end: datetime.datetime | None) -> int:
    """What the ledger holds against one budget counter: the sum it is rebuilt from."""
    with org_context(org_id):
        entries = SpendEntry.objects.filter(created_at__gte=start)
        if end is not None:
            entries = entries.filter(created_at__lt=end)
        if scope == BudgetScope.KEY:
            entries = entries.filter(key_id=target)
        elif scope == BudgetScope.TEAM:
            entries = entries.filter(team_id=target)
        elif scope == BudgetScope.END_USER:
            entries = entries.filter(end_user=end_user)
        return entries.aggregate(total=Sum("cost_microusd"))["total"] or 0


def _counter_rebuild(client: redis.Redis, reservation: Reservation, hold: BudgetHold, now: datetime.datetime) -> None:
    """Sets a missing counter from the ledger, once, under a lock that other processes wait on."""
    lock_key = hold.counter_key + ":rebuild"
    if not client.set(lock_key, 1, nx=True, ex=REBUILD_LOCK_SECONDS):
        time.sleep(REBUILD_WAIT_SECONDS)
        return
    try:
        if client.exists(hold.counter_key):
            return
        target = {BudgetScope.KEY: reservation.key_id, BudgetScope.TEAM: reservation.team_id}.get(hold.rule.scope, "")
        # Pending ledger rows of this process first, so that the sum includes them.
        ledger.spend_ledger_flush()
        try:
            spent = ledger_spent_microusd(org_id=reservation.org_id, scope=hold.rule.scope, target=str(target),
                                          end_user=hold.end_user, start=hold.period_start, end=hold.period_end)
        except DatabaseError:
            raise ProxyError(503, "The gateway cannot reach its database to rebuild budget counters; try again shortly.",
                             code="gateway_unavailable") from None
        pipe = client.pipeline()
        pipe.hsetnx(hold.counter_key, "settled", spent)
        pipe.hsetnx(hold.counter_key, "reserved", 0)
        ttl = _counter_ttl_seconds(hold, now)
        if ttl:
            pipe.expire(hold.counter_key, ttl)
        pipe.execute()
    finally:
        client.delete(lock_key)


def _refusal(reservation: Reservation, answer: list, now: datetime.datetime) -> ProxyError:
    kind = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
    if kind == "budget":
        hold = reservation.budgets[int(answer[1]) - 1]
        headers = {}
        if hold.period_end is not None:
            headers["Retry-After"] = str(max(1, int((hold.period_end - now).total_seconds())))
        scope = BudgetScope(hold.rule.scope).label.lower()
        return ProxyError(
            429, f"This request could cost up to ${pricing.microusd_to_usd(reservation.reserved_microusd)}, more than is "
                 f"left of the {hold.rule.period} {scope} budget {hold.rule.budget_id} "
                 f"(${pricing.microusd_to_usd(hold.rule.amount_microusd)}).",
            code="budget_exceeded", headers=headers)
    hold = reservation.limits[int(answer[1]) - 1]
    what = {"rpm": "requests per minute", "tpm": "tokens per minute", "concurrent": "concurrent requests"}[hold.kind]
    retry_after = 1 if hold.kind == "concurrent" else WINDOW_SECONDS - int(now.timestamp()) % WINDOW_SECONDS
    return ProxyError(
        429, f"Rate limit of {hold.limit} {what} for this {hold.rule.scope} reached "
             f"(limit {hold.rule.limit_id}); retry after {retry_after} s.",
        code="rate_limit_exceeded", headers={"Retry-After": str(retry_after)})


def spend_reserve(*, grant: KeyGrant, generation: int, request_id: str, endpoint: str, alias: str, body: dict,
                  end_user: str, candidates: list[Route], anthropic_client: bool) -> Reservation:
    """Reserves the worst-case cost against every applying budget and takes every rate limit, or
    raises ProxyError (429 naming the budget or limit, 400 for an unpriced model, 503 fail-closed)."""
    policy = org_spend_policy(grant.org_id, generation=generation)
    now = timezone.now()
    budgets = _budget_holds(policy, grant, end_user, now)
    limits = _limit_holds(policy, grant, int(now.timestamp()) // WINDOW_SECONDS)
    if not budgets and not limits:
        # Nothing to hold: the prompt is counted only if the provider's answer lacks usage (spend_prompt_tokens).
        _unpriced_refuse(candidates, endpoint, allow_unpriced=policy.allow_unpriced_models)
        return Reservation(org_id=grant.org_id, team_id=grant.team_id, key_id=grant.key_id, request_id=request_id,
                           token="", endpoint=endpoint, alias=alias, end_user=end_user, created_at=now,
                           prompt_tokens=None, reserved_tokens=0, reserved_microusd=0, budgets=(), limits=())
    prompt_tokens = prompt_tokens_count(endpoint, body)
    worst_cost, worst_tokens = _worst_case(candidates, endpoint, body, prompt_tokens, anthropic_client=anthropic_client,
                                           allow_unpriced=policy.allow_unpriced_models)
    reservation = Reservation(
        org_id=grant.org_id, team_id=grant.team_id, key_id=grant.key_id, request_id=request_id,
        token=uuid.uuid4().hex, endpoint=endpoint,
        alias=alias, end_user=end_user, created_at=now, prompt_tokens=prompt_tokens, reserved_tokens=worst_tokens,
        reserved_microusd=worst_cost, budgets=budgets, limits=limits,
    )
    keys = [hold.counter_key for hold in reservation.budgets] + [hold.counter_key for hold in reservation.limits]
    keys += _open_reservation_keys()
    args: list = [int(now.timestamp() * 1000), len(reservation.budgets), worst_cost, worst_tokens,
                  2 * WINDOW_SECONDS * 1000, LEASE_MS, reservation.token]
    args += [hold.rule.amount_microusd for hold in reservation.budgets]
    for hold in reservation.limits:
        args += [hold.kind, hold.limit]
    client = redis_client()
    try:
        for _ in range(REBUILD_ATTEMPTS):
            answer = _script(RESERVE_SCRIPT)(keys=keys, args=args)
            kind = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
            if kind == "ok":
                return reservation
            if kind != "missing":
                raise _refusal(reservation, answer, now)
            for index in answer[1:]:
                _counter_rebuild(client, reservation, reservation.budgets[int(index) - 1], now)
    except redis.RedisError:
        raise _redis_unavailable() from None
    raise ProxyError(503, "Budget counters are being rebuilt; try again shortly.", code="gateway_unavailable")


def spend_settle(reservation: Reservation, *, route: Route | None, prompt_tokens: int, completion_tokens: int,
                 error_code: str = "") -> int:
    """Charges the actual cost (nothing without a route), releases the rest of the reservation, frees the
    rate-limit slots and hands the ledger row to the buffer. Idempotent; returns the cost in µUSD."""
    if reservation.settled:
        return 0
    reservation.settled = True
    cost = pricing.cost_microusd(route, reservation.endpoint, prompt_tokens, completion_tokens) if route else 0
    crossed: list = []
    if reservation.budgets or reservation.limits:
        now = timezone.now()
        keys = [hold.counter_key for hold in reservation.budgets]
        keys += [hold.counter_key + ":soft" for hold in reservation.budgets]
        returned = [hold for hold in reservation.limits if hold.kind != "rpm"]  # a request stays counted
        keys += [hold.counter_key for hold in returned]
        keys += _open_reservation_keys()
        correction = prompt_tokens + completion_tokens - reservation.reserved_tokens
        args: list = [len(reservation.budgets), reservation.reserved_microusd, cost, reservation.token, correction]
        for hold in reservation.budgets:
            soft = hold.rule.soft_limit_microusd
            args += [-1 if soft is None else soft, _counter_ttl_seconds(hold, now) or COUNTER_GRACE_SECONDS]
        args += [hold.kind for hold in returned]
        try:
            crossed = _script(SETTLE_SCRIPT)(keys=keys, args=args)
        except redis.RedisError:
            # The reservation stays counted (the caps err on the safe side) until the counter is rebuilt.
            logger.exception("settling request %s in Redis failed", reservation.request_id)
    ledger.spend_ledger_append({
        "org_id": reservation.org_id, "created_at": reservation.created_at, "settled_at": timezone.now(),
        "request_id": reservation.request_id, "team_id": reservation.team_id, "key_id": reservation.key_id,
        "end_user": reservation.end_user, "endpoint": reservation.endpoint, "alias": reservation.alias[:200],
        "deployment": route.deployment_name if route else "", "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens, "reserved_microusd": reservation.reserved_microusd,
        "cost_microusd": cost, "status": SpendStatus.SETTLED if route else SpendStatus.RELEASED,
        "error_code": error_code,
    })
    for index, settled in zip(crossed[::2], crossed[1::2]):
        hold = reservation.budgets[int(index) - 1]
        try:
            budget_soft_limit_alert_record.delay(str(reservation.org_id), hold.rule.budget_id, hold.end_user,
                                                 hold.period_start.isoformat(), int(settled))
        except Exception:  # the broker is Redis, which just answered; an alert must never fail the request
            logger.exception("queueing the soft-limit alert of budget %s failed", hold.rule.budget_id)
    return cost


def budget_counter_read(*, budget_id: str, end_user: str, period_start: datetime.datetime) -> tuple[int, int] | None:
    """(settled, reserved) µUSD of one counter, or None when Redis holds none (it is rebuilt on the next request)."""
    values = redis_client().hmget(budget_counter_key(budget_id, end_user, period_start), "settled", "reserved")
    if values[0] is None and values[1] is None:
        return None
    return int(values[0] or 0), int(values[1] or 0)
