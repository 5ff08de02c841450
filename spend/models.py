"""Budgets, rate limits and the spend ledger. Money is held in integer micro-dollars
(1e-6 USD): exact in Redis' Lua numbers up to the largest budget (1e9 USD = 1e15 µUSD < 2**53)."""
from django.db import models
from django.db.models import Q
from django.utils import timezone

from keys.models import VirtualKey
from tenants.models import Team
from tenants.scoping import OrgOwnedModel


END_USER_MAX_LENGTH = 256


def end_user_is_valid(value) -> bool:
    """An end-user id (request header or field, budget target): at most 256 printable characters."""
    return isinstance(value, str) and len(value) <= END_USER_MAX_LENGTH and value.isprintable()


class BudgetScope(models.TextChoices):
    KEY = "key", "Virtual key"
    TEAM = "team", "Team"
    ORG = "org", "Org"
    END_USER = "end_user", "End user"


class BudgetPeriod(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly (from Monday)"
    MONTHLY = "monthly", "Monthly"
    NONE = "none", "None (never resets)"


class Budget(OrgOwnedModel):
    """A spending cap on one key, one team, the whole org, or end users.

    An end-user budget with an empty `end_user` applies to each end user separately (a default
    per-end-user cap); one naming an end user applies to that end user instead of the default.
    """

    scope = models.CharField(max_length=10, choices=BudgetScope.choices)
    key = models.ForeignKey(VirtualKey, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    end_user = models.CharField(max_length=END_USER_MAX_LENGTH, blank=True)
    amount_microusd = models.BigIntegerField()
    soft_limit_microusd = models.BigIntegerField(null=True, blank=True)
    period = models.CharField(max_length=10, choices=BudgetPeriod.choices)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="budget_target_matches_scope",
                condition=(
                    Q(scope="key", key__isnull=False, team__isnull=True, end_user="")
                    | Q(scope="team", key__isnull=True, team__isnull=False, end_user="")
                    | Q(scope="org", key__isnull=True, team__isnull=True, end_user="")
                    | Q(scope="end_user", key__isnull=True, team__isnull=True)
                ),
            ),
            models.CheckConstraint(name="budget_amount_positive", condition=Q(amount_microusd__gt=0)),
            models.UniqueConstraint(fields=["org", "scope", "key", "team", "end_user", "period"],
                                    name="budget_unique_per_target_and_period", nulls_distinct=False),
        ]


class RateLimitScope(models.TextChoices):
    KEY = "key", "Virtual key"
    TEAM = "team", "Team"


class RateLimit(OrgOwnedModel):
    """Per key or per team, across every gateway process; a null limit does not apply."""

    scope = models.CharField(max_length=10, choices=RateLimitScope.choices)
    key = models.ForeignKey(VirtualKey, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveBigIntegerField(null=True, blank=True)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="rate_limit_target_matches_scope",
                condition=Q(scope="key", key__isnull=False, team__isnull=True)
                | Q(scope="team", key__isnull=True, team__isnull=False),
            ),
            models.UniqueConstraint(fields=["org", "scope", "key", "team"], name="rate_limit_unique_per_target",
                                    nulls_distinct=False),
        ]


class SpendStatus(models.TextChoices):
    SETTLED = "settled", "Settled (the actual cost was charged)"
    RELEASED = "released", "Released (nothing was charged)"


class SpendEntry(OrgOwnedModel):
    """The durable ledger: one row per request that held a reservation. Budget counters in Redis
    are rebuilt from these rows (see spend/gate.py), so `created_at` is the reservation's time,
    which decides the budget period the cost counts in."""

    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(default=timezone.now)
    request_id = models.CharField(max_length=128)
    team_id = models.UUIDField(null=True, blank=True)
    key_id = models.UUIDField(null=True, blank=True)
    end_user = models.CharField(max_length=END_USER_MAX_LENGTH, blank=True)
    endpoint = models.CharField(max_length=16)
    alias = models.CharField(max_length=200, blank=True)
    deployment = models.CharField(max_length=50, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reserved_microusd = models.BigIntegerField(default=0)
    cost_microusd = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=SpendStatus.choices)
    error_code = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["org", "created_at"], name="spendentry_org_time"),
            models.Index(fields=["org", "key_id", "created_at"], name="spendentry_key_time"),
            models.Index(fields=["org", "team_id", "created_at"], name="spendentry_team_time"),
            models.Index(fields=["org", "end_user", "created_at"], name="spendentry_end_user_time"),
        ]
