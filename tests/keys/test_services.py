import datetime
import decimal
import json

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from config.errors import Conflict, ValidationFailed
from keys import services
from keys.models import ProviderCredential, VirtualKeySecret
from keys.secrets import secret_hash
from proxy.cache import gateway_cache_invalidate
from tenants.context import org_context
from tenants.services import team_create
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db

PROVIDER_KEY = "sk-upstream-TOPSECRET-0123456789"
LOCAL_BASE_URL = "http://127.0.0.1:8001/v1"


@pytest.fixture(autouse=True)
def local_upstreams(settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]


def catalog_create(org, *, alias: str = "gpt-4o"):
    """A credential, a deployment using it and an alias routing to it, built through the services."""
    with org_context(org.id):
        credential = services.credential_create(
            org=org, name="openai-main", provider_kind="openai", api_key=PROVIDER_KEY, actor=SYSTEM
        )
        deployment = services.deployment_create(
            org=org, name="gpt", provider_kind="openai", base_url=LOCAL_BASE_URL, upstream_model="gpt-4o",
            credential=credential, actor=SYSTEM,
        )
        model_alias = services.alias_create(org=org, name=alias, routes=[{"deployment": "gpt"}], actor=SYSTEM)
    return credential, deployment, model_alias


def key_create(org, team, **overrides):
    fields = {"name": "app", "allowed_aliases": ["gpt-4o"], "expires_at": None, "metadata": {}, **overrides}
    with org_context(org.id):
        return services.virtual_key_create(org=org, team=team, actor=SYSTEM, **fields)


def audit_changes_json(org) -> str:
    with org_context(org.id):
        return json.dumps(list(AuditEvent.objects.values("action", "changes")))


@pytest.fixture
def org(org_a):
    """org A, with the test running inside its org context."""
    a, _ = org_a
    with org_context(a.id):
        yield a


@pytest.fixture
def team(org):
    return team_create(org=org, slug="search", name="Search", actor=SYSTEM)


# Provider credentials -------------------------------------------------------------------

def test_credential_is_encrypted_and_bound_to_its_row(org):
    credential = services.credential_create(org=org, name="openai", provider_kind="openai", api_key=PROVIDER_KEY, actor=SYSTEM)
    stored = ProviderCredential.objects.get(id=credential.id)
    assert PROVIDER_KEY not in stored.ciphertext
    assert services.credential_api_key(stored) == PROVIDER_KEY
    assert PROVIDER_KEY not in audit_changes_json(org)


def test_credential_update_replaces_the_key_only_when_it_differs(org):
    credential = services.credential_create(org=org, name="openai", provider_kind="openai", api_key=PROVIDER_KEY, actor=SYSTEM)
    events = AuditEvent.objects.count()
    services.credential_update(org=org, credential=credential, api_key=PROVIDER_KEY, actor=SYSTEM)
    assert AuditEvent.objects.count() == events
    services.credential_update(org=org, credential=credential, api_key="sk-new-key", name="openai-2", actor=SYSTEM)
    stored = ProviderCredential.objects.get(id=credential.id)
    assert (stored.name, services.credential_api_key(stored)) == ("openai-2", "sk-new-key")
    event = AuditEvent.objects.filter(action="credential.update").get()
    assert event.changes == {"name": ["openai", "openai-2"], "api_key": "***"}
    assert "sk-new-key" not in audit_changes_json(org)


def test_credential_names_are_unique_per_org(org):
    services.credential_create(org=org, name="openai", provider_kind="openai", api_key="k1", actor=SYSTEM)
    with pytest.raises(Conflict) as raised:
        services.credential_create(org=org, name="openai", provider_kind="openai", api_key="k2", actor=SYSTEM)
    assert raised.value.field == "name"


@pytest.mark.parametrize(
    "name, provider_kind, api_key, field",
    [("Bad Name", "openai", "k", "name"), ("ok", "gemini", "k", "provider_kind"), ("ok", "openai", "  ", "api_key")],
)
def test_credential_create_bad_input(org, name, provider_kind, api_key, field):
    with pytest.raises(ValidationFailed) as raised:
        services.credential_create(org=org, name=name, provider_kind=provider_kind, api_key=api_key, actor=SYSTEM)
    assert raised.value.field == field


def test_credential_in_use_cannot_be_deleted(org):
    credential, deployment, alias = catalog_create(org)
    with pytest.raises(Conflict, match="gpt"):
        services.credential_delete(org=org, credential=credential, actor=SYSTEM)
    services.alias_delete(org=org, alias=alias, actor=SYSTEM)
    services.deployment_delete(org=org, deployment=deployment, actor=SYSTEM)
    services.credential_delete(org=org, credential=credential, actor=SYSTEM)
    assert not ProviderCredential.objects.exists()


def test_changes_invalidate_the_gateway_cache_after_commit(org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        catalog_create(org)
    assert callbacks == [gateway_cache_invalidate] * 3


# Deployments -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"name": "Not A Slug"}, "name"),
        ({"provider_kind": "gemini"}, "provider_kind"),
        ({"base_url": "http://10.0.0.5/v1"}, "base_url"),
        ({"base_url": "ftp://127.0.0.1/"}, "base_url"),
        ({"upstream_model": ""}, "upstream_model"),
        ({"provider_kind": "azure_openai"}, "api_version"),
        ({"provider_kind": "anthropic"}, "credential"),
        ({"credential": None}, "credential"),
        ({"price_input_per_mtok": decimal.Decimal("-0.01")}, "price_input_per_mtok"),
        ({"price_output_per_mtok": decimal.Decimal("0.0000001")}, "price_output_per_mtok"),
        ({"timeout_seconds": 0.5}, "timeout_seconds"),
        ({"timeout_seconds": 601}, "timeout_seconds"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"region": "mars"}, "region"),
    ],
)
def test_deployment_validation(org, overrides, field):
    credential, _, _ = catalog_create(org)
    fields = {
        "name": "new", "provider_kind": "openai", "base_url": LOCAL_BASE_URL, "upstream_model": "gpt-4o",
        "credential": credential, **overrides,
    }
    with pytest.raises(ValidationFailed) as raised:
        services.deployment_create(org=org, actor=SYSTEM, **fields)
    assert raised.value.field == field


def test_azure_deployment_with_api_version_and_credential_less_openai_compatible(org):
    azure = services.credential_create(org=org, name="azure", provider_kind="azure_openai", api_key="k", actor=SYSTEM)
    deployment = services.deployment_create(
        org=org, name="azure-gpt", provider_kind="azure_openai", base_url="http://127.0.0.1:8001",
        upstream_model="gpt-4o", api_version="2024-10-21", credential=azure, actor=SYSTEM,
    )
    assert deployment.api_version == "2024-10-21"
    local = services.deployment_create(
        org=org, name="vllm", provider_kind="openai_compatible", base_url=LOCAL_BASE_URL, upstream_model="llama", actor=SYSTEM
    )
    assert local.credential is None


def test_deployment_cannot_use_another_orgs_credential(org, org_b):
    b, _ = org_b
    other_credential, _, _ = catalog_create(b)
    with pytest.raises(ValidationFailed) as raised:
        services.deployment_create(
            org=org, name="x", provider_kind="openai", base_url=LOCAL_BASE_URL, upstream_model="m",
            credential=other_credential, actor=SYSTEM,
        )
    assert raised.value.field == "credential"


def test_deployment_update_records_only_what_changed(org):
    _, deployment, _ = catalog_create(org)
    services.deployment_update(
        org=org, deployment=deployment, actor=SYSTEM, timeout_seconds=60, price_input_per_mtok=decimal.Decimal("0.15")
    )
    event = AuditEvent.objects.filter(action="deployment.update").get()
    assert event.changes == {"price_input_per_mtok": [None, "0.15"]}
    services.deployment_update(org=org, deployment=deployment, actor=SYSTEM, price_input_per_mtok=decimal.Decimal("0.150"))
    assert AuditEvent.objects.filter(action="deployment.update").count() == 1


def test_deployment_routed_to_cannot_be_deleted(org):
    _, deployment, _ = catalog_create(org)
    with pytest.raises(Conflict, match="gpt-4o"):
        services.deployment_delete(org=org, deployment=deployment, actor=SYSTEM)


# Model aliases ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "has space", "x" * 101, "emoji-😀", "semi;colon"])
def test_alias_name_validation(org, name):
    catalog_create(org)
    with pytest.raises(ValidationFailed) as raised:
        services.alias_create(org=org, name=name, routes=[{"deployment": "gpt"}], actor=SYSTEM)
    assert raised.value.field == "name"


def test_alias_names_may_use_provider_style_characters(org):
    catalog_create(org)
    alias = services.alias_create(org=org, name="openai/gpt-4o:2024.11_20", routes=[{"deployment": "gpt"}], actor=SYSTEM)
    assert alias.name == "openai/gpt-4o:2024.11_20"


@pytest.mark.parametrize(
    "routes, field",
    [
        ([], "routes"),
        ([{"deployment": "missing"}], "routes[0].deployment"),
        ([{"deployment": "gpt"}, {"deployment": "gpt", "position": 1}], "routes[1].deployment"),
        ([{"deployment": "gpt", "weight": 0}], "routes[0].weight"),
        ([{"deployment": "gpt", "position": -1}], "routes[0].position"),
    ],
)
def test_alias_route_validation(org, routes, field):
    catalog_create(org)
    with pytest.raises(ValidationFailed) as raised:
        services.alias_create(org=org, name="new", routes=routes, actor=SYSTEM)
    assert raised.value.field == field


def test_alias_cannot_route_to_another_orgs_deployment(org, org_b):
    b, _ = org_b
    _, other_deployment, _ = catalog_create(b)
    with pytest.raises(ValidationFailed) as raised:
        services.alias_create(org=org, name="x", routes=[{"deployment": str(other_deployment.id)}], actor=SYSTEM)
    assert raised.value.field == "routes[0].deployment"


def test_alias_update_replaces_the_route_list(org):
    _, _, alias = catalog_create(org)
    services.deployment_create(
        org=org, name="local", provider_kind="openai_compatible", base_url=LOCAL_BASE_URL, upstream_model="m", actor=SYSTEM
    )
    routes = [{"deployment": "local", "position": 0, "weight": 3}, {"deployment": "gpt", "position": 1}]
    services.alias_update(org=org, alias=alias, routes=routes, actor=SYSTEM)
    assert services.alias_routes_describe(alias) == [
        {"deployment": "local", "position": 0, "weight": 3}, {"deployment": "gpt", "position": 1, "weight": 1}
    ]
    services.alias_update(org=org, alias=alias, routes=routes, actor=SYSTEM)
    assert AuditEvent.objects.filter(action="alias.update").count() == 1


# Virtual keys ----------------------------------------------------------------------------

def test_virtual_key_stores_only_the_hash_of_its_secret(org, team):
    catalog_create(org)
    key, secret = key_create(org, team, metadata={"owner": "search"})
    assert secret.startswith("sk-gh-") and key.prefix == secret[:10] and key.last_four == secret[-4:]
    stored = VirtualKeySecret.objects.get(key=key)
    assert stored.secret_hash == secret_hash(secret) and secret not in stored.secret_hash
    assert secret not in audit_changes_json(org)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"allowed_aliases": []}, "allowed_aliases"),
        ({"allowed_aliases": ["gpt-4o", "no-such-alias"]}, "allowed_aliases"),
        ({"allowed_aliases": ["*", "gpt-4o"]}, "allowed_aliases"),
        ({"expires_at": timezone.now() - datetime.timedelta(minutes=1)}, "expires_at"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"big": "x" * 2100}}, "metadata"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"name": " "}, "name"),
    ],
)
def test_virtual_key_validation(org, team, overrides, field):
    catalog_create(org)
    with pytest.raises(ValidationFailed) as raised:
        key_create(org, team, **overrides)
    assert raised.value.field == field


def test_wildcard_allows_every_alias(org, team):
    key, _ = key_create(org, team, allowed_aliases=["*"])
    assert key.allowed_aliases == ["*"]


def test_virtual_key_cannot_belong_to_another_orgs_team(org, org_b):
    b, _ = org_b
    catalog_create(org)
    with org_context(b.id):
        other_team = team_create(org=b, slug="t", name="T", actor=SYSTEM)
    with pytest.raises(ValidationFailed):
        key_create(org, other_team)


def test_rotation_gives_old_secrets_a_grace_period(org, team):
    catalog_create(org)
    key, first = key_create(org, team)
    before = timezone.now()
    key, second = services.virtual_key_rotate(org=org, key=key, grace_seconds=3600, actor=SYSTEM)
    assert second != first and key.last_four == second[-4:] and key.prefix == second[:10]
    old = VirtualKeySecret.objects.get(secret_hash=secret_hash(first))
    new = VirtualKeySecret.objects.get(secret_hash=secret_hash(second))
    assert before + datetime.timedelta(seconds=3599) < old.valid_until <= timezone.now() + datetime.timedelta(seconds=3600)
    assert new.valid_until is None
    # A later rotation with a longer grace does not extend the first secret.
    key, third = services.virtual_key_rotate(org=org, key=key, grace_seconds=86400, actor=SYSTEM)
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.valid_until < new.valid_until
    assert VirtualKeySecret.objects.get(secret_hash=secret_hash(third)).valid_until is None


def test_rotation_without_grace_ends_old_secrets_at_once(org, team):
    catalog_create(org)
    key, first = key_create(org, team)
    services.virtual_key_rotate(org=org, key=key, grace_seconds=0, actor=SYSTEM)
    assert VirtualKeySecret.objects.get(secret_hash=secret_hash(first)).valid_until <= timezone.now()


@pytest.mark.parametrize("grace_seconds", [-1, 30 * 86400 + 1, "60"])
def test_rotation_grace_is_bounded(org, team, grace_seconds):
    catalog_create(org)
    key, _ = key_create(org, team)
    with pytest.raises(ValidationFailed):
        services.virtual_key_rotate(org=org, key=key, grace_seconds=grace_seconds, actor=SYSTEM)


def test_revoke_is_idempotent_and_a_revoked_key_cannot_be_rotated(org, team):
    catalog_create(org)
    key, _ = key_create(org, team)
    revoked_at = services.virtual_key_revoke(org=org, key=key, actor=SYSTEM).revoked_at
    assert services.virtual_key_revoke(org=org, key=key, actor=SYSTEM).revoked_at == revoked_at
    assert AuditEvent.objects.filter(action="virtual_key.revoke").count() == 1
    with pytest.raises(Conflict):
        services.virtual_key_rotate(org=org, key=key, grace_seconds=0, actor=SYSTEM)
