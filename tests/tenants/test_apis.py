import uuid

import pytest

from audit.models import AuditEvent
from tenants.context import org_context

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *parts]) + "/"


def audit_actions(org) -> list[str]:
    with org_context(org.id):
        return list(AuditEvent.objects.order_by("created_at").values_list("action", flat=True))


# Orgs ---------------------------------------------------------------------------------

def test_org_list_shows_only_the_callers_orgs_with_their_role(org_a, org_b, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    response = api_as(owner_a).get("/api/v1/orgs/")
    assert response.status_code == 200
    assert [(o["slug"], o["role"]) for o in response.json()] == [(a.slug, "owner")]


def test_org_detail_and_update(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    assert client.get(url(a)).json()["logging_level"] == "metadata"
    response = client.patch(url(a), {"name": "Renamed", "retention_days": 90, "logging_level": "redacted"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Renamed" and response.json()["retention_days"] == 90
    assert "org.update" in audit_actions(a)


def test_another_orgs_detail_is_not_found_rather_than_forbidden(org_a, org_b, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    client = api_as(owner_a)
    for path in (url(b), url(b, "teams"), url(b, "members"), "/api/v1/orgs/no-such-org/", f"/api/v1/orgs/{b.id}/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"] == "Org not found."


def test_org_can_be_addressed_by_id(org_a, api_as):
    a, owner = org_a
    assert api_as(owner).get(f"/api/v1/orgs/{a.id}/").json()["slug"] == a.slug


@pytest.mark.parametrize(
    "body, field",
    [
        ({"retention_days": "ninety"}, "retention_days"),
        ({"retention_days": 0}, "retention_days"),
        ({"logging_level": "everything"}, "logging_level"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "is_admin": True}, "is_admin"),
    ],
)
def test_org_update_bad_input(org_a, api_as, body, field):
    a, owner = org_a
    response = api_as(owner).patch(url(a), body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_unauthenticated_requests_get_401(org_a, client):
    a, _ = org_a
    assert client.get("/api/v1/orgs/").status_code in (401, 403)
    response = client.get(url(a, "teams"), HTTP_AUTHORIZATION="Bearer gha_wrong")
    assert response.status_code == 401


# Teams --------------------------------------------------------------------------------

def test_team_crud_with_audit_events(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    created = client.post(url(a, "teams"), {"slug": "ml", "name": "ML"}, format="json")
    assert created.status_code == 201, created.json()
    team_id = created.json()["id"]
    listed = client.get(url(a, "teams")).json()
    assert [t["slug"] for t in listed["results"]] == ["ml"] and listed["count"] == 1
    assert client.get(url(a, "teams", team_id)).json()["name"] == "ML"
    assert client.patch(url(a, "teams", team_id), {"name": "Machine learning"}, format="json").status_code == 200
    assert client.delete(url(a, "teams", team_id)).status_code == 204
    assert client.get(url(a, "teams", team_id)).status_code == 404
    assert audit_actions(a)[-3:] == ["team.create", "team.update", "team.delete"]


def test_team_of_another_org_is_not_found(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    team_b = api_as(owner_b).post(url(b, "teams"), {"slug": "secret", "name": "Secret"}, format="json").json()
    client = api_as(owner_a)
    # Through org A's URL, org B's team id does not exist.
    assert client.get(url(a, "teams", team_b["id"])).status_code == 404
    assert client.patch(url(a, "teams", team_b["id"]), {"name": "x"}, format="json").status_code == 404
    assert client.delete(url(a, "teams", team_b["id"])).status_code == 404
    assert client.get(url(a, "teams")).json()["count"] == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "No slug"}, "slug"),
        ({"slug": "Bad Slug!", "name": "x"}, "slug"),
        ({"slug": "-leading", "name": "x"}, "slug"),
        ({"slug": "a" * 51, "name": "x"}, "slug"),
        ({"slug": "ok", "name": "x" * 101}, "name"),
        ({"slug": 12, "name": ["not", "a", "string"]}, "name"),
        ({"slug": "ok", "name": "x", "org": "another"}, "org"),
    ],
)
def test_team_create_bad_input(org_a, api_as, body, field):
    a, owner = org_a
    response = api_as(owner).post(url(a, "teams"), body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_duplicate_team_slug_is_a_field_error(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    assert client.post(url(a, "teams"), {"slug": "dup", "name": "One"}, format="json").status_code == 201
    response = client.post(url(a, "teams"), {"slug": "dup", "name": "Two"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"slug": ["A team with this slug already exists in the org."]}


def test_same_team_slug_in_two_orgs_is_fine(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    assert api_as(owner_a).post(url(a, "teams"), {"slug": "same", "name": "A"}, format="json").status_code == 201
    assert api_as(owner_b).post(url(b, "teams"), {"slug": "same", "name": "B"}, format="json").status_code == 201


def test_malformed_json_and_wrong_body_types(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    response = client.post(url(a, "teams"), data='{"slug": "x",', content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]
    response = client.post(url(a, "teams"), data='["a", "list"]', content_type="application/json")
    assert response.status_code == 400
    response = client.post(url(a, "teams"), data="slug=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


@pytest.mark.parametrize("bad_id", ["not-a-uuid", str(uuid.uuid4()), "1"])
def test_unknown_or_malformed_ids_are_404(org_a, api_as, bad_id):
    a, owner = org_a
    client = api_as(owner)
    for path in (url(a, "teams", bad_id), url(a, "members", bad_id), url(a, "teams", bad_id, "members")):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"


def test_unknown_api_path_is_a_json_404(api_as, org_a):
    _, owner = org_a
    response = api_as(owner).get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_method_not_in_role_map_is_405(org_a, api_as):
    a, owner = org_a
    assert api_as(owner).put(url(a, "teams"), {}, format="json").status_code == 405


# Members ------------------------------------------------------------------------------

def test_invite_change_role_and_remove_member(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    invited = client.post(url(a, "members"), {"email": "New.Person@Example.com", "role": "viewer"}, format="json")
    assert invited.status_code == 201, invited.json()
    assert invited.json()["email"] == "new.person@example.com"
    member_id = invited.json()["id"]
    changed = client.patch(url(a, "members", member_id), {"role": "member"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "member"
    assert client.delete(url(a, "members", member_id)).status_code == 204
    assert [m["email"] for m in client.get(url(a, "members")).json()["results"]] == [owner.email]
    assert audit_actions(a)[-3:] == ["member.add", "member.role_change", "member.remove"]


def test_inviting_an_existing_member_is_a_conflict(org_a, api_as):
    a, owner = org_a
    response = api_as(owner).post(url(a, "members"), {"email": owner.email}, format="json")
    assert response.status_code == 409 and "email" in response.json()


@pytest.mark.parametrize(
    "body, field",
    [({"email": "not-an-email"}, "email"), ({"email": "a@b.example", "role": "god"}, "role"), ({}, "email")],
)
def test_invite_bad_input(org_a, api_as, body, field):
    a, owner = org_a
    response = api_as(owner).post(url(a, "members"), body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_member_of_another_org_is_not_found(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    b_members = api_as(owner_b).get(url(b, "members")).json()["results"]
    client = api_as(owner_a)
    assert client.get(url(a, "members", b_members[0]["id"])).status_code == 404
    assert client.patch(url(a, "members", b_members[0]["id"]), {"role": "viewer"}, format="json").status_code == 404
    assert client.delete(url(a, "members", b_members[0]["id"])).status_code == 404


# Team members and team admins (django-guardian object permissions) ------------------------

def test_team_admin_manages_only_their_own_team(org_a, add_member, api_as):
    a, owner = org_a
    lead = add_member(a, "member")
    other = add_member(a, "member")
    owner_client = api_as(owner)
    team = owner_client.post(url(a, "teams"), {"slug": "search", "name": "Search"}, format="json").json()
    other_team = owner_client.post(url(a, "teams"), {"slug": "infra", "name": "Infra"}, format="json").json()
    members = {m["email"]: m["id"] for m in owner_client.get(url(a, "members")).json()["results"]}
    added = owner_client.post(
        url(a, "teams", team["id"], "members"), {"membership_id": members[lead.email], "is_team_admin": True}, format="json"
    )
    assert added.status_code == 201 and added.json()["is_team_admin"] is True

    lead_client = api_as(lead)
    # The team admin can rename their team and add members to it...
    assert lead_client.patch(url(a, "teams", team["id"]), {"name": "Search & Ranking"}, format="json").status_code == 200
    added = lead_client.post(url(a, "teams", team["id"], "members"), {"membership_id": members[other.email]}, format="json")
    assert added.status_code == 201
    assert lead_client.delete(url(a, "teams", team["id"], "members", added.json()["id"])).status_code == 204
    # ...but not another team, nor delete their own team, nor create teams.
    assert lead_client.patch(url(a, "teams", other_team["id"]), {"name": "x"}, format="json").status_code == 403
    assert lead_client.post(
        url(a, "teams", other_team["id"], "members"), {"membership_id": members[other.email]}, format="json"
    ).status_code == 403
    assert lead_client.delete(url(a, "teams", team["id"])).status_code == 403
    assert lead_client.post(url(a, "teams"), {"slug": "new", "name": "New"}, format="json").status_code == 403


def test_removing_a_member_revokes_their_team_admin_grant(org_a, add_member, api_as):
    a, owner = org_a
    lead = add_member(a, "member")
    client = api_as(owner)
    team = client.post(url(a, "teams"), {"slug": "t", "name": "T"}, format="json").json()
    lead_id = [m["id"] for m in client.get(url(a, "members")).json()["results"] if m["email"] == lead.email][0]
    client.post(url(a, "teams", team["id"], "members"), {"membership_id": lead_id, "is_team_admin": True}, format="json")
    assert client.delete(url(a, "members", lead_id)).status_code == 204
    client.post(url(a, "members"), {"email": lead.email, "role": "member"}, format="json")
    assert api_as(lead).patch(url(a, "teams", team["id"]), {"name": "x"}, format="json").status_code == 403


def test_team_member_bad_input(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    client = api_as(owner_a)
    team = client.post(url(a, "teams"), {"slug": "t", "name": "T"}, format="json").json()
    path = url(a, "teams", team["id"], "members")
    assert client.post(path, {"membership_id": "nope"}, format="json").status_code == 400
    assert client.post(path, {"membership_id": str(uuid.uuid4())}, format="json").status_code == 404
    b_member = api_as(owner_b).get(url(b, "members")).json()["results"][0]["id"]
    assert client.post(path, {"membership_id": b_member}, format="json").status_code == 404
    a_member = client.get(url(a, "members")).json()["results"][0]["id"]
    assert client.post(path, {"membership_id": a_member}, format="json").status_code == 201
    assert client.post(path, {"membership_id": a_member}, format="json").status_code == 409


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/orgs/{org}/teams/" in schema.content
    assert client.get("/api/docs/").status_code == 200
