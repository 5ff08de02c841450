"""The management API of an org's SSO connection."""
import io

import pytest

from keys.crypto import secret_decrypt
from sso.models import SsoConnection
from tenants.context import org_context

pytestmark = pytest.mark.django_db


def url(org) -> str:
    return f"/api/v1/orgs/{org.slug}/sso/"


@pytest.fixture
def connection_body(oidc_provider, settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]
    return {"issuer": oidc_provider.issuer, "client_id": "gatehouse", "client_secret": "s3cret-value",
            "domains": ["Corp.Example"], "group_roles": {"eng-leads": "admin"}}


def test_owner_configures_sso_and_the_secret_is_encrypted_and_never_returned(org_a, api_as, connection_body):
    org, owner = org_a
    client = api_as(owner)
    response = client.put(url(org), connection_body, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["domains"] == ["corp.example"] and body["has_client_secret"] is True
    assert body["redirect_uri"] == f"http://testserver/sso/{org.slug}/callback/"
    assert "s3cret-value" not in response.content.decode() and "client_secret" not in body
    with org_context(org.id):
        connection = SsoConnection.objects.get(org=org)
    assert "s3cret-value" not in connection.client_secret_ciphertext
    associated = f"sso:{org.id}:{connection.id}".encode()
    assert secret_decrypt(connection.client_secret_ciphertext, key_id=connection.encryption_key_id,
                          associated_data=associated) == "s3cret-value"
    # An update without the secret keeps it; the audit trail masks it when it is replaced.
    assert client.put(url(org), {**connection_body, "client_secret": "new"}, format="json").status_code == 200
    updated = {key: value for key, value in connection_body.items() if key != "client_secret"}
    assert client.put(url(org), {**updated, "default_role": "viewer"}, format="json").json()["default_role"] == "viewer"
    assert client.get(url(org)).json()["client_id"] == "gatehouse"
    assert client.delete(url(org)).status_code == 204
    assert client.get(url(org)).status_code == 404


def test_admins_read_owners_write(org_a, add_member, api_as, connection_body):
    org, owner = org_a
    api_as(owner).put(url(org), connection_body, format="json")
    admin = api_as(add_member(org, "admin"))
    assert admin.get(url(org)).status_code == 200
    assert admin.put(url(org), connection_body, format="json").status_code == 403
    assert api_as(add_member(org, "member")).get(url(org)).status_code == 403


def test_a_domain_belongs_to_one_org_and_other_orgs_see_nothing(org_a, org_b, api_as, connection_body):
    (a, owner_a), (b, owner_b) = org_a, org_b
    assert api_as(owner_a).put(url(a), connection_body, format="json").status_code == 200
    taken = api_as(owner_b).put(url(b), connection_body, format="json")
    assert taken.status_code == 409 and "another org" in str(taken.json())
    assert api_as(owner_b).get(url(b)).status_code == 404
    assert api_as(owner_b).get(url(a)).status_code == 404


@pytest.mark.parametrize(
    "change, field",
    [
        ({"default_role": "owner"}, "default_role"),
        ({"group_roles": {"x": "owner"}}, "group_roles"),
        ({"domains": ["not a domain"]}, "domains"),
        ({"sso_only": True}, "break_glass_email"),
        ({"sso_only": True, "break_glass_email": "nobody@x.example"}, "break_glass_email"),
        ({"scopes": "email"}, "scopes"),
        ({"issuer": "http://idp.example.com"}, "issuer"),
    ],
)
def test_bad_configuration_is_a_field_error(org_a, api_as, connection_body, change, field):
    org, owner = org_a
    response = api_as(owner).put(url(org), {**connection_body, **change}, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_sso_only_needs_an_owner_as_break_glass(org_a, api_as, connection_body):
    org, owner = org_a
    response = api_as(owner).put(url(org), {**connection_body, "sso_only": True, "break_glass_email": owner.email},
                                 format="json")
    assert response.status_code == 200 and response.json()["break_glass_email"] == owner.email


def test_secrets_reencrypt_moves_the_client_secret_to_the_new_key(org_a, api_as, connection_body, settings):
    from django.core.management import call_command

    from keys.crypto import encryption_key_generate
    from sso.services import sso_client_secret

    org, owner = org_a
    old, new = encryption_key_generate(), encryption_key_generate()
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"old:{old}"
    assert api_as(owner).put(url(org), connection_body, format="json").status_code == 200
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new},old:{old}"
    call_command("secrets_reencrypt", org=org.slug, stdout=io.StringIO())
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new}"
    with org_context(org.id):
        connection = SsoConnection.objects.get(org=org)
    assert connection.encryption_key_id == "new" and sso_client_secret(connection) == "s3cret-value"
