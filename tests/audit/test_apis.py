"""GET /api/v1/orgs/<org>/audit-events/ and .../audit-events/export."""
import datetime
import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import admin_token_create
from audit import chain
from audit.models import AuditEvent
from tenants.context import org_context
from tenants.models import Role
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *parts]) + "/"


def export_url(org) -> str:
    return url(org, "audit-events") + "export"


def token_client(org, user, role=Role.ADMIN):
    with org_context(org.id):
        token, secret = admin_token_create(
            org=org, user=user, name="audit", role=role, acting_role=Role.OWNER, expires_at=None, actor=SYSTEM
        )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client, token


def listed(response) -> list[dict]:
    assert response.status_code == 200, response.json()
    return response.json()["results"]


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def busy_org(org_a, api_as, add_member):
    """An org whose owner made changes through the console session, and an admin through a token."""
    a, owner = org_a
    admin = add_member(a, "admin")
    owner_client = api_as(owner)
    team = owner_client.post(url(a, "teams"), {"slug": "search", "name": "Search"}, format="json").json()
    owner_client.patch(url(a, "teams", team["id"]), {"name": "Search 2"}, format="json")
    admin_client, token = token_client(a, admin)
    admin_client.post(url(a, "teams"), {"slug": "ads", "name": "Ads"}, format="json", HTTP_X_REQUEST_ID="req-ads")
    return a, owner, admin, token, team


def test_list_is_newest_first_with_every_field(busy_org, api_as):
    a, owner, admin, token, team = busy_org
    events = listed(api_as(owner).get(url(a, "audit-events")))
    assert [event["action"] for event in events[:3]] == ["team.create", "admin_token.create", "team.update"]
    newest = events[0]
    assert newest["actor_kind"] == "admin_token" and newest["actor_token_id"] == str(token.id)
    assert newest["request_id"] == "req-ads" and newest["source_ip"] == "127.0.0.1"
    assert newest["seq"] == events[1]["seq"] + 1 and newest["prev_hash"] == events[1]["hash"]
    assert set(newest) >= {"changes", "target_type", "target_id", "user_agent", "created_at", "actor_label"}


def test_filters(busy_org, api_as):
    a, owner, admin, token, team = busy_org
    client = api_as(owner)

    def actions(**params):
        return [event["action"] for event in listed(client.get(url(a, "audit-events"), params))]

    assert actions(actor=owner.email.upper()) == ["team.update", "team.create"]
    assert actions(actor=admin.email) == ["team.create"]  # through the admin's token
    assert actions(actor=str(token.id)) == ["team.create"]
    assert actions(actor="nobody@example.com") == []
    assert actions(actor_kind="system") == ["admin_token.create", "member.add", "member.add", "org.create"]
    assert actions(action="team.update") == ["team.update"]
    assert actions(target_type="tenants.Team", target_id=team["id"]) == ["team.update", "team.create"]
    everything = listed(client.get(url(a, "audit-events")))
    middle = datetime.datetime.fromisoformat(everything[2]["created_at"])
    assert len(actions(since=iso(middle))) == 3
    assert len(actions(until=iso(middle))) == len(everything) - 3
    assert actions(since=iso(timezone.now() + datetime.timedelta(hours=1))) == []


def test_pagination(busy_org, api_as):
    a, owner, *_ = busy_org
    page = api_as(owner).get(url(a, "audit-events"), {"limit": 2, "offset": 1}).json()
    assert page["count"] == 7 and len(page["results"]) == 2 and page["next"] and page["previous"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"actor_kind": "robot"}, "actor_kind"),
        ({"limit": "ten"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"action": "x" * 65}, "action"),
        ({"ordering": "seq"}, "ordering"),
    ],
)
def test_bad_filters_are_400(org_a, api_as, params, field):
    a, owner = org_a
    response = api_as(owner).get(url(a, "audit-events"), params)
    assert response.status_code == 400 and field in response.json(), response.json()


@pytest.mark.parametrize("role, status", [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.MEMBER, 403), (Role.VIEWER, 403)])
def test_owners_and_admins_only(org_a, add_member, api_as, role, status):
    a, _ = org_a
    user = add_member(a, role) if role != Role.OWNER else org_a[1]
    client = api_as(user)
    assert client.get(url(a, "audit-events")).status_code == status
    assert _export(client, a, format="jsonl").status_code == status


def test_an_admin_token_with_a_lower_role_cannot_read(org_a):
    a, owner = org_a
    client, _ = token_client(a, owner, role=Role.MEMBER)
    assert client.get(url(a, "audit-events")).status_code == 403


def test_another_orgs_events_are_not_found_and_never_listed(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    client = api_as(owner_a)
    assert client.get(url(b, "audit-events")).status_code == 404
    assert _export(client, b, format="jsonl").status_code == 404
    with org_context(b.id):
        b_ids = {str(event_id) for event_id in AuditEvent.objects.values_list("id", flat=True)}
    assert b_ids and not b_ids & {event["id"] for event in listed(client.get(url(a, "audit-events")))}
    assert client.get(url(a, "audit-events"), {"target_id": str(b.id)}).json()["results"] == []


# Export --------------------------------------------------------------------------------------

def _export(client, org, **params):
    params = {"since": iso(timezone.now() - datetime.timedelta(days=1)), **params}
    return client.get(export_url(org), params)


def test_jsonl_export_streams_every_signed_field_and_is_audited(busy_org, api_as, settings):
    a, owner, *_ = busy_org
    response = _export(api_as(owner), a, format="jsonl")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith(f'attachment; filename="audit-events-{a.slug}-')
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [row["seq"] for row in rows] == list(range(1, 8))
    # An auditor holding the key verifies an export without the database.
    for row in rows:
        values = {**row, "created_at": datetime.datetime.fromisoformat(row["created_at"])}
        assert chain.mac(values) == row["hash"]
    with org_context(a.id):
        export = AuditEvent.objects.get(action="audit.export")
    assert export.actor_label == owner.email and export.changes["format"] == [None, "jsonl"]
    assert export.changes["dataset"] == [None, "audit_events"] and export.target_id == str(a.id)


def test_parquet_export(busy_org, api_as):
    a, owner, *_ = busy_org
    response = _export(api_as(owner), a, format="parquet")
    assert response.status_code == 200 and response["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))
    assert table.num_rows == 7 and table.column("seq").to_pylist() == list(range(1, 8))
    assert str(table.schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert json.loads(table.column("changes").to_pylist()[-1]) == {"slug": [None, "ads"], "name": [None, "Ads"]}


def test_export_of_an_empty_range(org_a, api_as):
    a, owner = org_a
    response = _export(api_as(owner), a, format="jsonl", since="2020-01-01T00:00:00Z", until="2020-01-02T00:00:00Z")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b""


@pytest.mark.parametrize(
    "params, field",
    [
        ({"format": "csv"}, "format"),
        ({"format": ""}, "format"),
        ({}, "format"),
        ({"format": "jsonl", "since": None}, "since"),
        ({"format": "jsonl", "since": "last week"}, "since"),
        ({"format": "jsonl", "since": "2026-03-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}, "until"),
        ({"format": "jsonl", "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:01Z"}, "until"),
        ({"format": "parquet", "since": "2020-01-01T00:00:00Z"}, "until"),  # until defaults to now: too long
        ({"format": "jsonl", "actor": "x@example.com"}, "actor"),
    ],
)
def test_bad_export_requests_are_400_and_not_audited(org_a, api_as, params, field):
    a, owner = org_a
    params = {"since": iso(timezone.now() - datetime.timedelta(days=1)), **params}
    response = api_as(owner).get(export_url(a), {name: value for name, value in params.items() if value is not None})
    assert response.status_code == 400 and field in response.json(), response.json()
    with org_context(a.id):
        assert not AuditEvent.objects.filter(action="audit.export").exists()


def test_a_range_of_exactly_31_days_is_allowed(org_a, api_as):
    a, owner = org_a
    response = api_as(owner).get(
        export_url(a), {"format": "jsonl", "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}
    )
    assert response.status_code == 200


# Management command ---------------------------------------------------------------------------

@pytest.mark.parametrize("export_format", ["jsonl", "parquet"])
def test_audit_export_command(busy_org, tmp_path, export_format):
    a, *_ = busy_org
    output = tmp_path / f"events.{export_format}"
    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    call_command("audit_export", org=a.slug, since=since, until=timezone.now().isoformat(),
                 export_format=export_format, output=str(output))
    if export_format == "jsonl":
        seqs = [json.loads(line)["seq"] for line in output.read_bytes().splitlines()]
    else:
        seqs = pq.read_table(output).column("seq").to_pylist()
    assert seqs == list(range(1, 8))
    with org_context(a.id):
        export = AuditEvent.objects.get(action="audit.export")
    assert export.actor_kind == "system" and export.actor_label == "manage.py audit_export"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"org": "no-such-org"}, "Unknown org"),
        ({"since": "soon"}, "--since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "after --since"),
    ],
)
def test_audit_export_command_bad_input(org_a, tmp_path, options, message):
    a, _ = org_a
    arguments = {"org": a.slug, "since": "2026-01-01", "until": "2026-01-02", "export_format": "jsonl",
                 "output": str(tmp_path / "out.jsonl"), **options}
    with pytest.raises(CommandError, match=message):
        call_command("audit_export", **arguments)
