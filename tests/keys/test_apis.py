import datetime
import json
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from keys.models import VirtualKeySecret
from keys.secrets import secret_hash
from tenants.context import org_context
from tenants.models import Membership
from tenants.services import team_create, team_member_add
from tests.conftest import SYSTEM
from tests.keys.test_services import LOCAL_BASE_URL, PROVIDER_KEY, catalog_create, local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *parts]) + "/"


def created(response) -> dict:
    assert response.status_code == 201, response.json()
    return response.json()


def audit_json(org) -> str:
    with org_context(org.id):
        return json.dumps(list(AuditEvent.objects.order_by("created_at").values("action", "changes")))


def audit_actions(org) -> list[str]:
    with org_context(org.id):
        return list(AuditEvent.objects.order_by("created_at").values_list("action", flat=True))


def team_of(org, slug: str = "search"):
    with org_context(org.id):
        return team_create(org=org, slug=slug, name=slug.title(), actor=SYSTEM)


def make_team_admin(org, team, user) -> None:
    with org_context(org.id):
        membership = Membership.objects.get(org=org, user=user)
        team_member_add(org=org, team=team, membership=membership, is_team_admin=True, actor=SYSTEM)


def credential_body(**overrides) -> dict:
    return {"name": "openai-main", "provider_kind": "openai", "api_key": PROVIDER_KEY, **overrides}


def deployment_body(**overrides) -> dict:
    return {
        "name": "gpt", "provider_kind": "openai", "base_url": LOCAL_BASE_URL, "upstream_model": "gpt-4o",
        "credential": "openai-main", **overrides,
    }


def key_body(team, **overrides) -> dict:
    return {"name": "app", "team_id": str(team.id), "allowed_aliases": ["gpt-4o"], **overrides}


# Provider credentials -------------------------------------------------------------------

def test_credential_crud_never_returns_the_api_key(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    body = created(client.post(url(a, "credentials"), credential_body(name="openai"), format="json"))
    assert set(body) == {"id", "name", "provider_kind", "encryption_key_id", "created_at", "updated_at"}
    responses = [
        client.get(url(a, "credentials")),
        client.get(url(a, "credentials", body["id"])),
        client.patch(url(a, "credentials", body["id"]), {"name": "openai-2", "api_key": "sk-second-SECRET"}, format="json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[2].json()["name"] == "openai-2"
    for response in responses:
        assert PROVIDER_KEY.encode() not in response.content and b"sk-second-SECRET" not in response.content
    assert client.delete(url(a, "credentials", body["id"])).status_code == 204
    assert client.get(url(a, "credentials", body["id"])).status_code == 404
    assert audit_actions(a)[-3:] == ["credential.create", "credential.update", "credential.delete"]
    assert PROVIDER_KEY not in audit_json(a) and "sk-second-SECRET" not in audit_json(a)


def test_credential_in_use_cannot_be_deleted(org_a, api_as):
    a, owner = org_a
    credential, _, _ = catalog_create(a)
    response = api_as(owner).delete(url(a, "credentials", str(credential.id)))
    assert response.status_code == 409 and "gpt" in response.json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "openai", "provider_kind": "openai"}, "api_key"),
        ({"name": "openai", "provider_kind": "gemini", "api_key": "k"}, "provider_kind"),
        ({"name": "Not a slug", "provider_kind": "openai", "api_key": "k"}, "name"),
        ({"name": "openai", "provider_kind": "openai", "api_key": ["k"]}, "api_key"),
        ({"name": "openai", "provider_kind": "openai", "api_key": "k", "ciphertext": "x"}, "ciphertext"),
    ],
)
def test_credential_create_bad_input(org_a, api_as, body, field):
    a, owner = org_a
    response = api_as(owner).post(url(a, "credentials"), body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_duplicate_names_are_conflicts_on_the_name_field(org_a, api_as):
    a, owner = org_a
    catalog_create(a)
    client = api_as(owner)
    for path, body in [
        ("credentials", credential_body()),
        ("deployments", deployment_body()),
        ("aliases", {"name": "gpt-4o", "routes": [{"deployment": "gpt"}]}),
    ]:
        response = client.post(url(a, path), body, format="json")
        assert response.status_code == 409, path
        assert list(response.json()) == ["name"]


# Deployments -----------------------------------------------------------------------------

def test_deployment_crud(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    created(client.post(url(a, "credentials"), credential_body(), format="json"))
    body = created(client.post(url(a, "deployments"), deployment_body(price_input_per_mtok="0.15"), format="json"))
    assert body["credential"] == "openai-main" and body["price_input_per_mtok"] == "0.150000"
    assert body["timeout_seconds"] == 60.0 and body["region"] == "us"
    changed = client.patch(url(a, "deployments", body["id"]), {"timeout_seconds": 120, "hipaa_eligible": True}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["timeout_seconds"] == 120 and changed.json()["hipaa_eligible"] is True
    assert [d["name"] for d in client.get(url(a, "deployments")).json()["results"]] == ["gpt"]
    assert client.get(url(a, "deployments", body["id"])).json()["upstream_model"] == "gpt-4o"
    assert client.delete(url(a, "deployments", body["id"])).status_code == 204
    assert audit_actions(a)[-3:] == ["deployment.create", "deployment.update", "deployment.delete"]
    assert PROVIDER_KEY not in audit_json(a)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"price_input_per_mtok": "-1"}, "price_input_per_mtok"),
        ({"price_output_per_mtok": "cheap"}, "price_output_per_mtok"),
        ({"provider_kind": "azure_openai"}, "api_version"),
        ({"provider_kind": "anthropic"}, "credential"),
        ({"credential": "no-such-credential"}, "credential"),
        ({"base_url": "http://169.254.169.254/"}, "base_url"),
        ({"base_url": "http://metadata.google.internal/"}, "base_url"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": "slow"}, "timeout_seconds"),
        ({"max_output_tokens": 1.5}, "max_output_tokens"),
        ({"upstream_model": None}, "upstream_model"),
        ({"credential_id": "x"}, "credential_id"),
    ],
)
def test_deployment_bad_input(org_a, api_as, overrides, field):
    a, owner = org_a
    catalog_create(a)
    response = api_as(owner).post(url(a, "deployments"), deployment_body(name="new", **overrides), format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


# Model aliases ---------------------------------------------------------------------------

def test_alias_crud_with_a_fallback_chain(org_a, api_as):
    a, owner = org_a
    _, deployment, _ = catalog_create(a)
    client = api_as(owner)
    local = deployment_body(name="local", provider_kind="openai_compatible", credential=None)
    created(client.post(url(a, "deployments"), local, format="json"))
    routes = [{"deployment": "local", "position": 1}, {"deployment": str(deployment.id), "position": 0, "weight": 2}]
    body = created(client.post(url(a, "aliases"), {"name": "chat", "routes": routes}, format="json"))
    assert [(r["deployment"], r["position"], r["weight"]) for r in body["routes"]] == [("gpt", 0, 2), ("local", 1, 1)]
    changed = client.patch(url(a, "aliases", body["id"]), {"routes": [{"deployment": "local"}]}, format="json")
    assert changed.status_code == 200, changed.json()
    assert [r["deployment"] for r in changed.json()["routes"]] == ["local"]
    renamed = client.patch(url(a, "aliases", body["id"]), {"name": "chat-v2"}, format="json")
    assert renamed.json()["name"] == "chat-v2" and len(renamed.json()["routes"]) == 1
    assert [x["name"] for x in client.get(url(a, "aliases")).json()["results"]] == ["chat-v2", "gpt-4o"]
    assert client.delete(url(a, "aliases", body["id"])).status_code == 204
    assert audit_actions(a)[-4:] == ["alias.create", "alias.update", "alias.update", "alias.delete"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "bad name!", "routes": [{"deployment": "gpt"}]}, "name"),
        ({"name": "ok", "routes": []}, "routes"),
        ({"name": "ok", "routes": [{"deployment": "nope"}]}, "routes[0].deployment"),
        ({"name": "ok", "routes": [{"deployment": "gpt", "weight": 0}]}, "routes[0].weight"),
        ({"name": "ok", "routes": [{"deployment": "gpt", "priority": 1}]}, "routes"),
        ({"name": "ok", "routes": "gpt"}, "routes"),
    ],
)
def test_alias_bad_input(org_a, api_as, body, field):
    a, owner = org_a
    catalog_create(a)
    response = api_as(owner).post(url(a, "aliases"), body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


# Virtual keys ----------------------------------------------------------------------------

def test_virtual_key_lifecycle(org_a, api_as):
    a, owner = org_a
    catalog_create(a)
    team = team_of(a)
    client = api_as(owner)
    body = created(client.post(url(a, "keys"), key_body(team, metadata={"app": "search-ui"}), format="json"))
    secret = body["secret"]
    assert secret.startswith("sk-gh-") and body["prefix"] == secret[:10] and body["last_four"] == secret[-4:]
    assert body["team"] == "search" and body["created_by"] == owner.email
    listed, detail = client.get(url(a, "keys")), client.get(url(a, "keys", body["id"]))
    for response in (listed, detail):
        assert response.status_code == 200 and secret.encode() not in response.content and b'"secret"' not in response.content
    with org_context(a.id):
        assert VirtualKeySecret.objects.get(key_id=body["id"]).secret_hash == secret_hash(secret)

    rotated = client.post(url(a, "keys", body["id"], "rotate"), {"grace_seconds": 60}, format="json")
    assert rotated.status_code == 200, rotated.json()
    assert rotated.json()["secret"] != secret and rotated.json()["last_four"] == rotated.json()["secret"][-4:]
    assert client.delete(url(a, "keys", body["id"])).status_code == 204
    assert client.delete(url(a, "keys", body["id"])).status_code == 204
    assert client.get(url(a, "keys", body["id"])).json()["revoked_at"] is not None
    response = client.post(url(a, "keys", body["id"], "rotate"), {"grace_seconds": 0}, format="json")
    assert response.status_code == 409
    assert audit_actions(a)[-3:] == ["virtual_key.create", "virtual_key.rotate", "virtual_key.revoke"]
    assert secret not in audit_json(a) and rotated.json()["secret"] not in audit_json(a)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"allowed_aliases": ["no-such-alias"]}, "allowed_aliases"),
        ({"allowed_aliases": []}, "allowed_aliases"),
        ({"allowed_aliases": "gpt-4o"}, "allowed_aliases"),
        ({"expires_at": (timezone.now() - datetime.timedelta(days=1)).isoformat()}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"metadata": {f"k{i}": i for i in range(17)}}, "metadata"),
        ({"metadata": "text"}, "metadata"),
        ({"team_id": "not-a-uuid"}, "team_id"),
        ({"secret": "sk-gh-mine"}, "secret"),
    ],
)
def test_virtual_key_bad_input(org_a, api_as, overrides, field):
    a, owner = org_a
    catalog_create(a)
    response = api_as(owner).post(url(a, "keys"), key_body(team_of(a), **overrides), format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


@pytest.mark.parametrize("body", [{}, {"grace_seconds": -5}, {"grace_seconds": 31 * 86400}, {"grace_seconds": "soon"}])
def test_rotate_bad_input(org_a, api_as, body):
    a, owner = org_a
    catalog_create(a)
    client = api_as(owner)
    key = created(client.post(url(a, "keys"), key_body(team_of(a)), format="json"))
    response = client.post(url(a, "keys", key["id"], "rotate"), body, format="json")
    assert response.status_code == 400 and "grace_seconds" in response.json()


# Roles -----------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_read_but_cannot_write(org_a, add_member, api_as, role):
    a, owner = org_a
    credential, deployment, alias = catalog_create(a)
    team = team_of(a)
    key = created(api_as(owner).post(url(a, "keys"), key_body(team), format="json"))
    client = api_as(add_member(a, role))
    for path in ("credentials", "deployments", "aliases", "keys"):
        assert client.get(url(a, path)).status_code == 200, path
    keys = client.get(url(a, "keys")).json()["results"]
    assert keys[0]["last_four"] == key["last_four"] and "secret" not in keys[0]
    writes = [
        ("post", url(a, "credentials"), credential_body(name="x")),
        ("patch", url(a, "credentials", str(credential.id)), {"name": "x"}),
        ("delete", url(a, "credentials", str(credential.id)), None),
        ("post", url(a, "deployments"), deployment_body(name="x")),
        ("patch", url(a, "deployments", str(deployment.id)), {"timeout_seconds": 5}),
        ("delete", url(a, "deployments", str(deployment.id)), None),
        ("post", url(a, "aliases"), {"name": "x", "routes": [{"deployment": "gpt"}]}),
        ("patch", url(a, "aliases", str(alias.id)), {"name": "x"}),
        ("delete", url(a, "aliases", str(alias.id)), None),
        ("post", url(a, "keys"), key_body(team)),
        ("post", url(a, "keys", key["id"], "rotate"), {"grace_seconds": 0}),
        ("delete", url(a, "keys", key["id"]), None),
    ]
    for method, path, body in writes:
        assert getattr(client, method)(path, body, format="json").status_code == 403, (method, path)


def test_admin_manages_everything(org_a, add_member, api_as):
    a, _ = org_a
    catalog_create(a)
    client = api_as(add_member(a, "admin"))
    created(client.post(url(a, "credentials"), credential_body(name="second"), format="json"))
    key = created(client.post(url(a, "keys"), key_body(team_of(a)), format="json"))
    assert client.delete(url(a, "keys", key["id"])).status_code == 204


def test_team_admin_manages_only_their_teams_keys(org_a, add_member, api_as):
    a, owner = org_a
    catalog_create(a)
    search, infra = team_of(a, "search"), team_of(a, "infra")
    lead = add_member(a, "member")
    make_team_admin(a, search, lead)
    infra_key = created(api_as(owner).post(url(a, "keys"), key_body(infra), format="json"))
    client = api_as(lead)

    own = created(client.post(url(a, "keys"), key_body(search), format="json"))
    assert client.post(url(a, "keys", own["id"], "rotate"), {"grace_seconds": 0}, format="json").status_code == 200
    assert client.delete(url(a, "keys", own["id"])).status_code == 204

    assert client.post(url(a, "keys"), key_body(infra), format="json").status_code == 403
    assert client.post(url(a, "keys"), key_body(infra, team_id=str(uuid.uuid4())), format="json").status_code == 403
    assert client.post(url(a, "keys", infra_key["id"], "rotate"), {"grace_seconds": 0}, format="json").status_code == 403
    assert client.delete(url(a, "keys", infra_key["id"])).status_code == 403
    # Team admin is about keys only: the org's catalog stays admin-only.
    assert client.post(url(a, "credentials"), credential_body(name="x"), format="json").status_code == 403


def test_viewer_with_a_team_admin_grant_still_cannot_manage_keys(org_a, add_member, api_as):
    a, _ = org_a
    catalog_create(a)
    team = team_of(a)
    viewer = add_member(a, "viewer")
    make_team_admin(a, team, viewer)
    assert api_as(viewer).post(url(a, "keys"), key_body(team), format="json").status_code == 403


# Two orgs --------------------------------------------------------------------------------

def test_another_orgs_objects_are_not_found(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    catalog_create(a)
    credential_b, deployment_b, alias_b = catalog_create(b)
    team_b = team_of(b)
    key_b = created(api_as(owner_b).post(url(b, "keys"), key_body(team_b), format="json"))
    client = api_as(owner_a)
    for path, object_id in [
        ("credentials", credential_b.id), ("deployments", deployment_b.id), ("aliases", alias_b.id), ("keys", key_b["id"]),
    ]:
        listed = client.get(url(a, path)).json()["results"]
        assert str(object_id) not in {item["id"] for item in listed}, path
        assert client.get(url(a, path, str(object_id))).status_code == 404, path
        assert client.delete(url(a, path, str(object_id))).status_code == 404, path
    assert client.patch(url(a, "deployments", str(deployment_b.id)), {"timeout_seconds": 5}, format="json").status_code == 404
    assert client.post(url(a, "keys", key_b["id"], "rotate"), {"grace_seconds": 0}, format="json").status_code == 404
    # Referring to org B's objects from org A's writes finds nothing either.
    response = client.post(url(a, "deployments"), deployment_body(name="x", credential=str(credential_b.id)), format="json")
    assert response.status_code == 400 and "credential" in response.json()
    response = client.post(url(a, "aliases"), {"name": "x", "routes": [{"deployment": str(deployment_b.id)}]}, format="json")
    assert response.status_code == 400 and "routes[0].deployment" in response.json()
    assert client.post(url(a, "keys"), key_body(team_b), format="json").status_code == 404
    assert client.get(url(b, "credentials")).status_code == 404


@pytest.mark.parametrize("path", ["credentials", "deployments", "aliases", "keys"])
@pytest.mark.parametrize("bad_id", ["not-a-uuid", str(uuid.uuid4())])
def test_unknown_or_malformed_ids_are_404(org_a, api_as, path, bad_id):
    a, owner = org_a
    response = api_as(owner).get(url(a, path, bad_id))
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/json"


def test_openapi_schema_lists_the_endpoints(client):
    schema = client.get("/api/schema/").content
    for path in ("credentials/", "deployments/{deployment_id}/", "aliases/", "keys/{key_id}/rotate/"):
        assert f"/api/v1/orgs/{{org}}/{path}".encode() in schema, path
