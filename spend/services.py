"""Writes of budgets and rate limits, and the soft-limit alert.

Each change is validated, audited in its own transaction and, because the gateway caches an org's
budgets and limits per process (spend/gate.py), bumps the gateway cache generation after commit.
"""
import datetime
import decimal
import uuid

from django.db import IntegrityError, models, transaction

from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import Conflict, ValidationFailed
from keys.models import VirtualKey
from keys.services import field_changes
from proxy.cache import gateway_change_record
from spend.models import (
    END_USER_MAX_LENGTH, Budget, BudgetPeriod, BudgetScope, RateLimit, RateLimitScope, end_user_is_valid,
)
from spend.pricing import microusd_to_usd, usd_to_microusd
from tenants.context import org_context
from tenants.models import Org, Team
from tenants.webhooks import org_webhook_notify

AMOUNT_MAX_USD = decimal.Decimal(1_000_000_000)
AMOUNT_MIN_USD = decimal.Decimal("0.000001")
RATE_LIMIT_MAX = 1_000_000_000
SOFT_LIMIT_ALERT_ACTOR = Actor.system("spend")


def end_user_validate(value: str, *, field: str) -> None:
    """An end-user id: at most 256 printable characters (the same rule as the x-gatehouse-end-user header)."""
    if not end_user_is_valid(value):
        raise ValidationFailed(f"Use at most {END_USER_MAX_LENGTH} printable characters.", field=field)


def _amount_microusd(value, *, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        value = decimal.Decimal(value)
    if not isinstance(value, decimal.Decimal) or not value.is_finite():
        raise ValidationFailed("Use a number of US dollars.", field=field)
    if value < AMOUNT_MIN_USD or value > AMOUNT_MAX_USD:
        raise ValidationFailed(f"Use an amount above 0 and at most {AMOUNT_MAX_USD} US dollars.", field=field)
    return usd_to_microusd(value)


def _amounts_validate(budget: Budget) -> None:
    if budget.soft_limit_microusd is not None and budget.soft_limit_microusd >= budget.amount_microusd:
        raise ValidationFailed("The soft limit must be below the amount.", field="soft_limit_usd")
    if budget.period not in BudgetPeriod.values:
        raise ValidationFailed(f"Use one of {', '.join(BudgetPeriod.values)}.", field="period")


def _budget_target_validate(*, org: Org, scope: str, key: VirtualKey | None, team: Team | None, end_user: str) -> None:
    if scope not in BudgetScope.values:
        raise ValidationFailed(f"Use one of {', '.join(BudgetScope.values)}.", field="scope")
    for name, value, needed in (("key_id", key, scope == BudgetScope.KEY), ("team_id", team, scope == BudgetScope.TEAM)):
        if needed and value is None:
            raise ValidationFailed(f"A {scope} budget needs {name}.", field=name)
        if not needed and value is not None:
            raise ValidationFailed(f"A {scope} budget takes no {name}.", field=name)
        if value is not None and value.org_id != org.id:
            raise ValidationFailed(f"No such {name[:-3]} in this org.", field=name)
    if end_user and scope != BudgetScope.END_USER:
        raise ValidationFailed(f"A {scope} budget takes no end_user.", field="end_user")
    end_user_validate(end_user, field="end_user")


def _budget_changes(budget: Budget) -> dict:
    return {
        "scope": [None, budget.scope], "key": [None, str(budget.key_id) if budget.key_id else None],
        "team": [None, str(budget.team_id) if budget.team_id else None], "end_user": [None, budget.end_user],
        "amount_usd": [None, format(microusd_to_usd(budget.amount_microusd), "f")],
        "soft_limit_usd": [None, None if budget.soft_limit_microusd is None
                           else format(microusd_to_usd(budget.soft_limit_microusd), "f")],
        "period": [None, budget.period],
    }


def _saved(instance: models.Model, *, what: str) -> None:
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise Conflict(f"{what} already exists for this target.") from None


@transaction.atomic
def budget_create(
    *, org: Org, actor: Actor, scope: str, period: str, amount_usd: decimal.Decimal,
    soft_limit_usd: decimal.Decimal | None = None, key: VirtualKey | None = None, team: Team | None = None,
    end_user: str = "",
) -> Budget:
    """An end-user budget with an empty `end_user` is the default cap of every end user."""
    _budget_target_validate(org=org, scope=scope, key=key, team=team, end_user=end_user)
    budget = Budget(
        org=org, scope=scope, key=key, team=team, end_user=end_user, period=period,
        amount_microusd=_amount_microusd(amount_usd, field="amount_usd"),
        soft_limit_microusd=None if soft_limit_usd is None else _amount_microusd(soft_limit_usd, field="soft_limit_usd"),
    )
    _amounts_validate(budget)
    _saved(budget, what=f"A {period} budget")
    gateway_change_record(org=org, actor=actor, action="budget.create", target=budget, changes=_budget_changes(budget))
    return budget


UNSET = object()


@transaction.atomic
def budget_update(*, org: Org, budget: Budget, actor: Actor, amount_usd=UNSET, soft_limit_usd=UNSET,
                  period=UNSET) -> Budget:
    """A change of period starts counting in the new period (spend already in the ledger counts)."""
    fields = {}
    if amount_usd is not UNSET:
        fields["amount_microusd"] = _amount_microusd(amount_usd, field="amount_usd")
    if soft_limit_usd is not UNSET:
        fields["soft_limit_microusd"] = (None if soft_limit_usd is None
                                         else _amount_microusd(soft_limit_usd, field="soft_limit_usd"))
    if period is not UNSET:
        fields["period"] = period
    changes = field_changes(budget, fields)
    for name, value in fields.items():
        setattr(budget, name, value)
    _amounts_validate(budget)
    if changes:
        budget.updated_at = datetime.datetime.now(datetime.UTC)
        _saved(budget, what=f"A {budget.period} budget")
        gateway_change_record(org=org, actor=actor, action="budget.update", target=budget,
                       changes={name: list(change) for name, change in changes.items()})
    return budget


@transaction.atomic
def budget_delete(*, org: Org, budget: Budget, actor: Actor) -> None:
    gateway_change_record(org=org, actor=actor, action="budget.delete", target=budget, changes=_budget_changes(budget))
    budget.delete()


LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "max_concurrent")


def _limits_validate(limit: RateLimit) -> None:
    for name in LIMIT_FIELDS:
        value = getattr(limit, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= RATE_LIMIT_MAX):
            raise ValidationFailed(f"Use a whole number from 1 to {RATE_LIMIT_MAX}, or null for no limit.", field=name)
    if all(getattr(limit, name) is None for name in LIMIT_FIELDS):
        raise ValidationFailed(f"Set at least one of {', '.join(LIMIT_FIELDS)}.")


@transaction.atomic
def rate_limit_create(*, org: Org, actor: Actor, scope: str, key: VirtualKey | None = None, team: Team | None = None,
                      requests_per_minute: int | None = None, tokens_per_minute: int | None = None,
                      max_concurrent: int | None = None) -> RateLimit:
    if scope not in RateLimitScope.values:
        raise ValidationFailed(f"Use one of {', '.join(RateLimitScope.values)}.", field="scope")
    _budget_target_validate(org=org, scope=scope, key=key, team=team, end_user="")
    limit = RateLimit(org=org, scope=scope, key=key, team=team, requests_per_minute=requests_per_minute,
                      tokens_per_minute=tokens_per_minute, max_concurrent=max_concurrent)
    _limits_validate(limit)
    _saved(limit, what="A rate limit")
    gateway_change_record(org=org, actor=actor, action="rate_limit.create", target=limit, changes={
        "scope": [None, scope], "key": [None, str(limit.key_id) if limit.key_id else None],
        "team": [None, str(limit.team_id) if limit.team_id else None],
        **{name: [None, getattr(limit, name)] for name in LIMIT_FIELDS},
    })
    return limit


@transaction.atomic
def rate_limit_update(*, org: Org, limit: RateLimit, actor: Actor, **fields) -> RateLimit:
    changes = field_changes(limit, {name: value for name, value in fields.items() if name in LIMIT_FIELDS})
    for name, (_, value) in changes.items():
        setattr(limit, name, value)
    _limits_validate(limit)
    if changes:
        limit.updated_at = datetime.datetime.now(datetime.UTC)
        limit.save()
        gateway_change_record(org=org, actor=actor, action="rate_limit.update", target=limit,
                       changes={name: list(change) for name, change in changes.items()})
    return limit


@transaction.atomic
def rate_limit_delete(*, org: Org, limit: RateLimit, actor: Actor) -> None:
    gateway_change_record(org=org, actor=actor, action="rate_limit.delete", target=limit, changes={})
    limit.delete()


def budget_soft_limit_alert(*, org_id: uuid.UUID, budget_id: str, end_user: str, period_start: datetime.datetime,
                            spent_microusd: int) -> None:
    """Once per budget, end user and period (spend/gate.py decides): an audit event and the org's webhook."""
    with org_context(org_id):
        budget = Budget.objects.filter(id=budget_id).first()
        if budget is None:
            return
        details = {
            "budget_id": budget_id, "scope": budget.scope, "period": budget.period,
            "period_start": period_start.isoformat(), "end_user": end_user or None,
            "amount_usd": format(microusd_to_usd(budget.amount_microusd), "f"),
            "soft_limit_usd": format(microusd_to_usd(budget.soft_limit_microusd or 0), "f"),
            "spent_usd": format(microusd_to_usd(spent_microusd), "f"),
        }
        audit_event_record(org_id=org_id, actor=SOFT_LIMIT_ALERT_ACTOR, action="budget.soft_limit_reached",
                           target=budget, changes={name: [None, value] for name, value in details.items()})
        org_webhook_notify(org_id=org_id, event="budget.soft_limit_reached", payload=details)
