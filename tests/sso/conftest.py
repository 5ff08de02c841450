"""Orgs signed in through the real OpenID provider of tests/oidc, and a browser's way through a login."""
import dataclasses
from urllib.parse import urlsplit

import pytest

from sso.services import sso_connection_save
from tenants.context import org_context
from tests.conftest import SYSTEM, unique_slug

TEST_SERVER = "http://testserver"


@dataclasses.dataclass
class SsoOrg:
    org: object
    owner: object
    domain: str
    client_id: str
    client_secret: str


@pytest.fixture
def sso_org_for(make_org, oidc_provider, settings):
    """sso_org_for(**connection options) -> an org whose domain signs in through the test provider."""
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]

    def make(**options) -> SsoOrg:
        slug = unique_slug("sso")
        org, owner = make_org(slug=slug)
        client = oidc_provider.client_register(redirect_uris=[f"{TEST_SERVER}/sso/{slug}/callback/"])
        domain = f"{slug}.example"
        with org_context(org.id):
            sso_connection_save(
                org=org, actor=SYSTEM, issuer=oidc_provider.issuer, client_id=client["client_id"],
                client_secret=client["client_secret"], domains=[domain], **options,
            )
        return SsoOrg(org=org, owner=owner, domain=domain, client_id=client["client_id"],
                      client_secret=client["client_secret"])

    return make


@pytest.fixture
def sso_org(sso_org_for) -> SsoOrg:
    return sso_org_for()


def sso_begin(client, email: str) -> str:
    """Submits the login page's single sign-on form; returns the IdP authorization URL it redirects to."""
    response = client.post("/login/sso/", {"email": email})
    assert response.status_code == 302, response.content[:2000]
    return response["Location"]


def sso_callback_path(oidc_provider, authorization_url: str, *, email: str, **sign_in) -> str:
    """The provider's redirect back to Gatehouse (path and query), after signing in as `email`."""
    back = oidc_provider.sign_in(authorization_url, email=email, back_to=TEST_SERVER, **sign_in)
    parts = urlsplit(back)
    return f"{parts.path}?{parts.query}"


def sso_login(client, oidc_provider, email: str, *, login_email: str | None = None, **sign_in):
    """A whole SSO login: the login page, the provider's sign-in as `email`, and the callback's response."""
    authorization_url = sso_begin(client, login_email or email)
    return client.get(sso_callback_path(oidc_provider, authorization_url, email=email, **sign_in))
