"""Budget period boundaries: midnight in the org's time zone, DST-safe.

Boundaries are computed on the local calendar (a day, a week from Monday, a month) and only then
converted to UTC, so a day is 23 or 25 hours across a daylight-saving change and a month ends on
its own last day. A midnight that does not exist locally (a DST jump at 00:00) resolves to the
first instant after it (zoneinfo's fold=0 rule, normalized through UTC).
"""
import datetime
import zoneinfo

from spend.models import BudgetPeriod

# A budget without a period counts everything since this instant.
EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def _local_midnight(day: datetime.date, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    local = datetime.datetime(day.year, day.month, day.day, tzinfo=zone)
    # Round-trip through UTC: a non-existent local midnight becomes a real instant.
    return local.astimezone(datetime.UTC)


def _period_start_day(period: str, today: datetime.date) -> datetime.date:
    if period == BudgetPeriod.DAILY:
        return today
    if period == BudgetPeriod.WEEKLY:
        return today - datetime.timedelta(days=today.weekday())
    if period == BudgetPeriod.MONTHLY:
        return today.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def _next_start_day(period: str, start: datetime.date) -> datetime.date:
    if period == BudgetPeriod.DAILY:
        return start + datetime.timedelta(days=1)
    if period == BudgetPeriod.WEEKLY:
        return start + datetime.timedelta(days=7)
    return (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def period_bounds(period: str, zone: zoneinfo.ZoneInfo, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime | None]:
    """[start, end) in UTC of the period holding `now`; end is None for a budget that never resets."""
    if period == BudgetPeriod.NONE:
        return EPOCH, None
    start_day = _period_start_day(period, now.astimezone(zone).date())
    start = _local_midnight(start_day, zone)
    if start > now:  # `now` is in the hour a DST jump skipped past midnight: still the previous period
        start_day = _period_start_day(period, start_day - datetime.timedelta(days=1))
        start = _local_midnight(start_day, zone)
    return start, _local_midnight(_next_start_day(period, start_day), zone)
