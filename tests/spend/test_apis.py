"""The budgets, rate limits and spend report API: roles, bad input, another org's objects, reports and CSV."""
import csv
import datetime
import io
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from keys import services as key_services
from spend.models import SpendEntry, SpendStatus
from tenants.context import org_context
from tenants.services import team_create
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *map(str, parts)]) + "/"


@pytest.fixture
def world(org_a, org_b, api_as, add_member):
    (a, owner_a), (b, _) = org_a, org_b
    with org_context(a.id):
        team = team_create(org=a, slug="apps", name="Apps", actor=SYSTEM)
        key, _ = key_services.virtual_key_create(org=a, team=team, name="app", allowed_aliases=["*"], expires_at=None,
                                                 metadata={}, actor=SYSTEM)
    with org_context(b.id):
        team_b = team_create(org=b, slug="apps", name="Apps", actor=SYSTEM)
        key_b, _ = key_services.virtual_key_create(org=b, team=team_b, name="app", allowed_aliases=["*"],
                                                   expires_at=None, metadata={}, actor=SYSTEM)
    return {"org": a, "owner": api_as(owner_a), "viewer": api_as(add_member(a, "viewer")), "team": team, "key": key,
            "org_b": b, "team_b": team_b, "key_b": key_b}


def test_an_admin_manages_budgets_and_every_change_is_audited(world):
    owner, org = world["owner"], world["org"]
    created = owner.post(url(org, "budgets"), {"scope": "key", "key_id": str(world["key"].id), "amount_usd": "25.50",
                                               "soft_limit_usd": "20", "period": "monthly"}, format="json")
    assert created.status_code == 201, created.content
    assert created.data["amount_usd"] == "25.500000" and created.data["soft_limit_usd"] == "20.000000"
    budget_id = created.data["id"]
    changed = owner.patch(url(org, "budgets", budget_id), {"amount_usd": "30", "period": "weekly"}, format="json")
    assert changed.status_code == 200 and changed.data["period"] == "weekly"
    state = owner.get(url(org, "budgets", budget_id, "state"))
    assert state.status_code == 200
    assert state.data["spent_usd"] == "0.000000" and state.data["remaining_usd"] == "30.000000"
    assert state.data["period_start"] and state.data["period_end"]
    assert owner.delete(url(org, "budgets", budget_id)).status_code == 204
    with org_context(org.id):
        actions = list(AuditEvent.objects.filter(action__startswith="budget.").values_list("action", flat=True))
    assert actions == ["budget.create", "budget.update", "budget.delete"]


@pytest.mark.parametrize("body,field", [
    ({"scope": "org", "amount_usd": "-1", "period": "daily"}, "amount_usd"),
    ({"scope": "org", "amount_usd": "0", "period": "daily"}, "amount_usd"),
    ({"scope": "org", "amount_usd": "1000000001", "period": "daily"}, "amount_usd"),
    ({"scope": "org", "amount_usd": "NaN", "period": "daily"}, "amount_usd"),
    ({"scope": "org", "amount_usd": "ten", "period": "daily"}, "amount_usd"),
    ({"scope": "org", "amount_usd": "10", "period": "hourly"}, "period"),
    ({"scope": "org", "amount_usd": "10", "soft_limit_usd": "10", "period": "daily"}, "soft_limit_usd"),
    ({"scope": "galaxy", "amount_usd": "10", "period": "daily"}, "scope"),
    ({"scope": "key", "amount_usd": "10", "period": "daily"}, "key_id"),
    ({"scope": "org", "team_id": "TEAM", "amount_usd": "10", "period": "daily"}, "team_id"),
    ({"scope": "key", "key_id": "KEY_B", "amount_usd": "10", "period": "daily"}, "key_id"),
    ({"scope": "team", "team_id": "TEAM_B", "amount_usd": "10", "period": "daily"}, "team_id"),
    ({"scope": "key", "key_id": str(uuid.uuid4()), "amount_usd": "10", "period": "daily"}, "key_id"),
    ({"scope": "end_user", "end_user": "tab\there", "amount_usd": "10", "period": "daily"}, "end_user"),
    ({"scope": "org", "amount_usd": "10", "period": "daily", "currency": "EUR"}, "currency"),
])
def test_bad_budgets_are_refused_with_the_field_named(world, body, field):
    ids = {"KEY_B": str(world["key_b"].id), "TEAM_B": str(world["team_b"].id), "TEAM": str(world["team"].id)}
    body = {name: ids.get(value, value) for name, value in body.items()}
    response = world["owner"].post(url(world["org"], "budgets"), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    with org_context(world["org"].id):
        assert not AuditEvent.objects.filter(action="budget.create").exists()


def test_a_second_budget_for_the_same_target_and_period_conflicts(world):
    body = {"scope": "end_user", "end_user": "alice", "amount_usd": "1", "period": "daily"}
    assert world["owner"].post(url(world["org"], "budgets"), body, format="json").status_code == 201
    assert world["owner"].post(url(world["org"], "budgets"), body, format="json").status_code == 409
    body["period"] = "monthly"
    assert world["owner"].post(url(world["org"], "budgets"), body, format="json").status_code == 201


def test_a_viewer_reads_but_cannot_change_budgets_or_limits(world):
    viewer, org = world["viewer"], world["org"]
    assert viewer.get(url(org, "budgets")).status_code == 200
    assert viewer.get(url(org, "spend")).status_code == 200
    assert viewer.post(url(org, "budgets"), {"scope": "org", "amount_usd": "1", "period": "daily"},
                       format="json").status_code == 403
    assert viewer.post(url(org, "rate-limits"), {"scope": "team", "team_id": str(world["team"].id),
                                                 "requests_per_minute": 5}, format="json").status_code == 403


def test_another_orgs_budgets_and_limits_are_not_found(world):
    owner, org, org_b = world["owner"], world["org"], world["org_b"]
    from spend import services

    with org_context(org_b.id):
        foreign = services.budget_create(org=org_b, actor=SYSTEM, scope="org", period="daily", amount_usd=1)
        foreign_limit = services.rate_limit_create(org=org_b, actor=SYSTEM, scope="key", key=world["key_b"],
                                                   requests_per_minute=1)
    assert owner.get(url(org, "budgets")).json()["results"] == []
    assert owner.get(url(org, "rate-limits")).json()["results"] == []
    for path in (url(org, "budgets", foreign.id), url(org, "budgets", foreign.id, "state"),
                 url(org, "rate-limits", foreign_limit.id), url(org, "budgets", "not-a-uuid")):
        assert owner.get(path).status_code == 404
    assert owner.delete(url(org, "budgets", foreign.id)).status_code == 404
    assert owner.patch(url(org, "rate-limits", foreign_limit.id), {"max_concurrent": 9}, format="json").status_code == 404


def test_rate_limits_are_managed_and_validated(world):
    owner, org = world["owner"], world["org"]
    created = owner.post(url(org, "rate-limits"), {"scope": "key", "key_id": str(world["key"].id),
                                                   "requests_per_minute": 60, "max_concurrent": 2}, format="json")
    assert created.status_code == 201, created.content
    limit_id = created.data["id"]
    assert owner.patch(url(org, "rate-limits", limit_id), {"tokens_per_minute": 1000},
                       format="json").data["tokens_per_minute"] == 1000
    for body in ({"requests_per_minute": 0}, {"max_concurrent": -3}, {"tokens_per_minute": "many"},
                 {"requests_per_minute": None, "tokens_per_minute": None, "max_concurrent": None}):
        response = owner.patch(url(org, "rate-limits", limit_id), body, format="json")
        assert response.status_code == 400, (body, response.content)
    duplicate = owner.post(url(org, "rate-limits"), {"scope": "key", "key_id": str(world["key"].id),
                                                     "requests_per_minute": 5}, format="json")
    assert duplicate.status_code == 409
    nothing = owner.post(url(org, "rate-limits"), {"scope": "team", "team_id": str(world["team"].id)}, format="json")
    assert nothing.status_code == 400
    assert owner.delete(url(org, "rate-limits", limit_id)).status_code == 204


def _ledger(org, team, key, rows):
    with org_context(org.id):
        SpendEntry.objects.bulk_create([
            SpendEntry(org=org, request_id=f"r{index}", team_id=team.id, key_id=key.id, end_user=end_user,
                       endpoint="chat", alias=alias, deployment="d", prompt_tokens=10, completion_tokens=5,
                       reserved_microusd=100, cost_microusd=cost, status=SpendStatus.SETTLED)
            for index, (alias, end_user, cost) in enumerate(rows)
        ])


def test_the_spend_report_groups_and_the_csv_export_streams_the_ledger(world):
    owner, org = world["owner"], world["org"]
    _ledger(org, world["team"], world["key"], [("gpt", "alice", 1_500_000), ("gpt", "bob", 250), ("claude", "", 10)])
    _ledger(world["org_b"], world["team_b"], world["key_b"], [("gpt", "mallory", 999_000_000)])

    total = owner.get(url(org, "spend")).json()
    assert total == [{"requests": 3, "prompt_tokens": 30, "completion_tokens": 15, "cost_usd": "1.500260"}]
    by_model = owner.get(url(org, "spend"), {"group_by": "model,end_user"}).json()
    assert [(row["alias"], row["end_user"], row["cost_usd"]) for row in by_model] == [
        ("claude", "", "0.000010"), ("gpt", "alice", "1.500000"), ("gpt", "bob", "0.000250")]
    by_day = owner.get(url(org, "spend"), {"group_by": "day,key,team"}).json()
    assert len(by_day) == 1 and by_day[0]["key_id"] == str(world["key"].id) and by_day[0]["requests"] == 3
    assert owner.get(url(org, "spend"), {"group_by": "planet"}).status_code == 400
    assert owner.get(url(org, "spend"), {"since": "yesterday"}).status_code == 400
    assert owner.get(url(org, "spend"), {"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"}).status_code == 400
    assert owner.get(url(org, "spend"), {"since": "2099-01-01T00:00:00Z"}).json()[0]["requests"] == 0

    export_url = url(org, "spend").rstrip("/") + "/export"
    assert owner.get(export_url, {"since": "2000-01-01T00:00:00Z"}).status_code == 400  # more than a year at once
    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    exported = owner.get(export_url, {"since": since})
    assert exported.status_code == 200 and exported["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert sorted(row["cost_usd"] for row in rows) == ["0.000010", "0.000250", "1.500000"]
    assert {row["end_user"] for row in rows} == {"alice", "bob", ""}
    missing_since = owner.get(export_url)
    assert missing_since.status_code == 400
    with org_context(org.id):
        assert AuditEvent.objects.filter(action="audit.export", changes__dataset=[None, "spend"]).count() == 1
