"""Period boundaries: local midnights converted to UTC, across month ends, time zones and daylight saving."""
import datetime
import zoneinfo

from hypothesis import given, settings, strategies as st

from spend.models import BudgetPeriod
from spend.periods import EPOCH, period_bounds

UTC = datetime.UTC
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham",
         "America/Santiago", "Asia/Gaza", "America/Havana", "Pacific/Apia"]
RESETTING = [BudgetPeriod.DAILY, BudgetPeriod.WEEKLY, BudgetPeriod.MONTHLY]
instants = st.datetimes(min_value=datetime.datetime(2001, 1, 1), max_value=datetime.datetime(2037, 12, 31),
                        timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(now=instants, zone_name=st.sampled_from(ZONES), period=st.sampled_from(RESETTING))
def test_a_period_holds_now_and_starts_at_a_local_day_boundary(now, zone_name, period):
    zone = zoneinfo.ZoneInfo(zone_name)
    start, end = period_bounds(period, zone, now)
    assert start <= now < end
    local_start = start.astimezone(zone)
    # Midnight, or the first instant after a midnight that a DST jump skipped.
    assert local_start.time() <= datetime.time(1, 0)
    if period == BudgetPeriod.MONTHLY:
        assert local_start.day == 1
    if period == BudgetPeriod.WEEKLY:
        assert local_start.weekday() == 0
    hours = (end - start).total_seconds() / 3600
    expected = {BudgetPeriod.DAILY: (22, 26), BudgetPeriod.WEEKLY: (166, 170), BudgetPeriod.MONTHLY: (27 * 24, 31 * 24 + 2)}
    low, high = expected[period]
    assert low <= hours <= high


@settings(max_examples=200, deadline=None)
@given(now=instants, zone_name=st.sampled_from(ZONES), period=st.sampled_from(RESETTING))
def test_periods_tile_time_without_gaps_or_overlaps(now, zone_name, period):
    zone = zoneinfo.ZoneInfo(zone_name)
    start, end = period_bounds(period, zone, now)
    assert period_bounds(period, zone, end)[0] == end
    assert period_bounds(period, zone, end - datetime.timedelta(microseconds=1)) == (start, end)
    assert period_bounds(period, zone, start) == (start, end)


def test_a_period_without_reset_counts_from_the_epoch():
    assert period_bounds(BudgetPeriod.NONE, zoneinfo.ZoneInfo("UTC"), datetime.datetime.now(UTC)) == (EPOCH, None)


def test_month_ends_in_the_org_time_zone():
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # 23:30 UTC on 29 Feb 2024 is already 1 March in Berlin.
    start, end = period_bounds(BudgetPeriod.MONTHLY, berlin, datetime.datetime(2024, 2, 29, 23, 30, tzinfo=UTC))
    assert start == datetime.datetime(2024, 2, 29, 23, 0, tzinfo=UTC)
    assert end == datetime.datetime(2024, 3, 31, 22, 0, tzinfo=UTC)  # DST began on 31 March: UTC+2
    start, end = period_bounds(BudgetPeriod.MONTHLY, zoneinfo.ZoneInfo("UTC"), datetime.datetime(2023, 12, 31, 23, 59, tzinfo=UTC))
    assert (start, end) == (datetime.datetime(2023, 12, 1, tzinfo=UTC), datetime.datetime(2024, 1, 1, tzinfo=UTC))


def test_daylight_saving_days_are_23_and_25_hours():
    new_york = zoneinfo.ZoneInfo("America/New_York")
    spring = period_bounds(BudgetPeriod.DAILY, new_york, datetime.datetime(2025, 3, 9, 12, tzinfo=UTC))
    autumn = period_bounds(BudgetPeriod.DAILY, new_york, datetime.datetime(2025, 11, 2, 12, tzinfo=UTC))
    assert spring[1] - spring[0] == datetime.timedelta(hours=23)
    assert autumn[1] - autumn[0] == datetime.timedelta(hours=25)
    assert spring[0] == datetime.datetime(2025, 3, 9, 5, tzinfo=UTC)


def test_a_midnight_skipped_by_daylight_saving_starts_the_day_at_one():
    # Santiago moved clocks from 00:00 to 01:00 on 8 September 2024: that day has no midnight.
    santiago = zoneinfo.ZoneInfo("America/Santiago")
    start, end = period_bounds(BudgetPeriod.DAILY, santiago, datetime.datetime(2024, 9, 8, 12, tzinfo=UTC))
    assert start.astimezone(santiago).replace(tzinfo=None) == datetime.datetime(2024, 9, 8, 1, 0)
    assert end - start == datetime.timedelta(hours=23)
