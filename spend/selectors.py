"""Reads of budgets, rate limits, counters and the spend ledger, through the org-scoped managers."""
import dataclasses
import datetime
import zoneinfo
from collections.abc import Iterator

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from spend.gate import budget_counter_read, ledger_spent_microusd
from spend.models import Budget, BudgetScope, RateLimit, SpendEntry
from spend.periods import period_bounds
from tenants.context import org_context
from tenants.models import Org
from tenants.selectors import object_by_id_or_not_found

GROUPS = {"org": None, "team": "team_id", "key": "key_id", "model": "alias", "end_user": "end_user", "day": "day"}


def budget_list(*, org: Org) -> QuerySet[Budget]:
    return Budget.objects.filter(org=org).order_by("created_at", "id")


def budget_get(*, org: Org, budget_id) -> Budget:
    return object_by_id_or_not_found(budget_list(org=org), budget_id, "Budget")


def rate_limit_list(*, org: Org) -> QuerySet[RateLimit]:
    return RateLimit.objects.filter(org=org).order_by("created_at", "id")


def rate_limit_get(*, org: Org, limit_id) -> RateLimit:
    return object_by_id_or_not_found(rate_limit_list(org=org), limit_id, "Rate limit")


@dataclasses.dataclass(frozen=True)
class BudgetState:
    period_start: datetime.datetime | None
    period_end: datetime.datetime | None
    amount_microusd: int
    spent_microusd: int
    reserved_microusd: int
    counter_in_redis: bool

    @property
    def remaining_microusd(self) -> int:
        return max(0, self.amount_microusd - self.spent_microusd - self.reserved_microusd)


def budget_state(*, org: Org, budget: Budget, end_user: str = "") -> BudgetState:
    """The current period's counter; from the ledger when Redis holds none yet (no open reservations then)."""
    start, end = period_bounds(budget.period, zoneinfo.ZoneInfo(org.time_zone), timezone.now())
    subject = end_user if budget.scope == BudgetScope.END_USER else ""
    counter = budget_counter_read(budget_id=str(budget.id), end_user=subject, period_start=start)
    in_redis = counter is not None
    if counter is None:
        target = str(budget.key_id or budget.team_id or "")
        spent = ledger_spent_microusd(org_id=org.id, scope=budget.scope, target=target, end_user=subject,
                                      start=start, end=end)
        counter = (spent, 0)
    return BudgetState(period_start=start if end is not None else None, period_end=end,
                       amount_microusd=budget.amount_microusd, spent_microusd=counter[0], reserved_microusd=counter[1],
                       counter_in_redis=in_redis)


def _entries(*, org: Org, since: datetime.datetime | None, until: datetime.datetime | None) -> QuerySet[SpendEntry]:
    entries = SpendEntry.objects.filter(org=org)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    return entries


def spend_report(*, org: Org, group_by: list[str], since: datetime.datetime | None = None,
                 until: datetime.datetime | None = None) -> list[dict]:
    """Requests, tokens and cost grouped by any of org, team, key, model, end_user and day (in the org's time zone)."""
    entries = _entries(org=org, since=since, until=until).annotate(
        day=TruncDay("created_at", tzinfo=zoneinfo.ZoneInfo(org.time_zone)))
    fields = [GROUPS[name] for name in group_by if GROUPS[name]]
    totals = {"requests": Count("id"), "prompt_tokens": Sum("prompt_tokens"),
              "completion_tokens": Sum("completion_tokens"), "cost_microusd": Sum("cost_microusd")}
    if not fields:
        return [{name: value or 0 for name, value in entries.aggregate(**totals).items()}]
    rows = entries.values(*fields).annotate(**totals).order_by(*fields)
    report = []
    for row in rows:
        if "day" in row:
            row["day"] = row["day"].date()
        report.append(row)
    return report


EXPORT_FIELDS = ("created_at", "settled_at", "request_id", "team_id", "key_id", "end_user", "endpoint", "alias",
                 "deployment", "prompt_tokens", "completion_tokens", "reserved_microusd", "cost_microusd", "status",
                 "error_code")
EXPORT_BATCH = 2000


def spend_export_rows(*, org: Org, since: datetime.datetime | None, until: datetime.datetime | None) -> Iterator[dict]:
    """Ledger rows oldest first. Enters the org context itself: a streamed response is read after the view returned."""
    with org_context(org.id):
        yield from _entries(org=org, since=since, until=until).order_by("created_at", "id").values(
            *EXPORT_FIELDS).iterator(chunk_size=EXPORT_BATCH)
