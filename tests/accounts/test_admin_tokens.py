import datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AdminToken
from keys.secrets import secret_hash
from tenants.context import org_context
from tenants.models import Membership

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *parts]) + "/"


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def create_token(client, org, **body):
    response = client.post(url(org, "tokens"), {"name": "ci", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_token_secret_is_shown_once_and_stored_hashed(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    created = create_token(client, a)
    secret = created["secret"]
    assert secret.startswith("gha_") and created["last_four"] == secret[-4:]
    listed = client.get(url(a, "tokens")).json()["results"]
    assert "secret" not in listed[0] and listed[0]["last_four"] == secret[-4:]
    with org_context(a.id):
        token = AdminToken.objects.get(id=created["id"])
    assert token.secret_hash == secret_hash(secret) and secret not in token.secret_hash


def test_token_authenticates_with_its_role(org_a, add_member, api_as):
    a, owner = org_a
    secret = create_token(api_as(owner), a, role="viewer")["secret"]
    client = bearer(secret)
    assert client.get(url(a, "teams")).status_code == 200
    assert client.post(url(a, "teams"), {"slug": "t", "name": "T"}, format="json").status_code == 403


def test_token_never_exceeds_its_users_current_role(org_a, add_member, api_as):
    a, owner = org_a
    admin = add_member(a, "admin")
    secret = create_token(api_as(admin), a)["secret"]
    assert bearer(secret).post(url(a, "teams"), {"slug": "t1", "name": "T"}, format="json").status_code == 201
    with org_context(a.id):
        Membership.objects.filter(org=a, user=admin).update(role="viewer")
    assert bearer(secret).post(url(a, "teams"), {"slug": "t2", "name": "T"}, format="json").status_code == 403


def test_token_cannot_carry_a_role_above_its_creator(org_a, add_member, api_as):
    a, _ = org_a
    member = add_member(a, "member")
    response = api_as(member).post(url(a, "tokens"), {"name": "x", "role": "owner"}, format="json")
    assert response.status_code == 403


def test_revoked_token_stops_working_and_revocation_is_audited(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    created = create_token(client, a)
    assert bearer(created["secret"]).get(url(a)).status_code == 200
    assert client.delete(url(a, "tokens", created["id"])).status_code == 204
    response = bearer(created["secret"]).get(url(a))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_expired_token_is_refused(org_a, api_as):
    a, owner = org_a
    created = create_token(api_as(owner), a, expires_at=(timezone.now() + datetime.timedelta(hours=1)).isoformat())
    with org_context(a.id):
        AdminToken.objects.filter(id=created["id"]).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert bearer(created["secret"]).get(url(a)).status_code == 401


def test_token_is_bound_to_its_org(org_a, org_b, add_member, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    # The same person is a member of both orgs, but the token belongs to org A only.
    with org_context(b.id):
        from tenants.models import Role
        from tenants.services import member_invite
        from tests.conftest import SYSTEM

        member_invite(org=b, email=owner_a.email, role=Role.ADMIN, actor=SYSTEM, acting_role=Role.OWNER)
    secret = create_token(api_as(owner_a), a)["secret"]
    assert bearer(secret).get(url(b)).status_code == 404
    assert [o["slug"] for o in bearer(secret).get("/api/v1/orgs/").json()] == [a.slug]


def test_tokens_cannot_mint_tokens(org_a, api_as):
    a, owner = org_a
    secret = create_token(api_as(owner), a)["secret"]
    assert bearer(secret).post(url(a, "tokens"), {"name": "child"}, format="json").status_code == 403


def test_members_see_only_their_own_tokens(org_a, add_member, api_as):
    a, owner = org_a
    member = add_member(a, "member")
    owner_token = create_token(api_as(owner), a)
    create_token(api_as(member), a)
    member_client = api_as(member)
    assert len(member_client.get(url(a, "tokens")).json()["results"]) == 1
    assert member_client.delete(url(a, "tokens", owner_token["id"])).status_code == 404
    assert len(api_as(owner).get(url(a, "tokens")).json()["results"]) == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ],
)
def test_token_create_bad_input(org_a, api_as, body, field):
    a, owner = org_a
    response = api_as(owner).post(url(a, "tokens"), body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_malformed_bearer_values_are_401(org_a):
    a, _ = org_a
    for value in ("Bearer", "Bearer gha_", "Bearer gha_" + "x" * 43, "Bearer \u00e9\u00e9"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=value)
        assert client.get(url(a)).status_code in (401, 403), value
