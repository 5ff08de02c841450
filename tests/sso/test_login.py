"""SSO logins through a real OpenID provider: provisioning, group roles, and every refusal."""
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY

from accounts.models import User
from audit.models import AuditEvent
from sso.models import SsoIdentity
from tenants.context import org_context
from tenants.models import Membership, Role
from django.test import Client

from sso.services import sso_connection_save
from tests.conftest import SYSTEM
from tests.sso.conftest import sso_begin, sso_callback_path, sso_login

pytestmark = pytest.mark.django_db


def sso_failures(org) -> list[dict]:
    with org_context(org.id):
        return list(AuditEvent.objects.filter(org=org, action="auth.sso_failed").values_list("changes", flat=True))


def assert_no_session(client):
    assert SESSION_KEY not in client.session
    assert client.get("/").status_code == 302


def test_first_login_provisions_a_member_just_in_time(client, oidc_provider, sso_org):
    email = f"dev@{sso_org.domain}"
    response = sso_login(client, oidc_provider, email)
    assert response.status_code == 302 and response["Location"] == f"/orgs/{sso_org.org.slug}/"
    user = User.objects.get(email=email)
    assert not user.has_usable_password()
    with org_context(sso_org.org.id):
        membership = Membership.objects.get(org=sso_org.org, user=user)
        assert membership.role == Role.MEMBER
        assert SsoIdentity.objects.get(org=sso_org.org, user=user).subject == f"acct:{email}"
        actions = set(AuditEvent.objects.filter(org=sso_org.org).values_list("action", flat=True))
    assert {"member.add", "auth.login"} <= actions
    page = client.get(f"/orgs/{sso_org.org.slug}/")
    assert page.status_code == 200 and b"you signed in with sso" in page.content
    # The next login finds the same person by the IdP's subject.
    client.post("/logout/")
    assert sso_login(client, oidc_provider, email).status_code == 302
    assert User.objects.filter(email=email).count() == 1


def test_groups_claim_maps_to_a_role(client, oidc_provider, sso_org_for):
    sso = sso_org_for(group_roles={"platform-admins": "admin", "auditors": "viewer"}, scopes="openid email groups")
    email = f"lead@{sso.domain}"
    response = sso_login(client, oidc_provider, email, groups="auditors,platform-admins")
    assert response.status_code == 302
    with org_context(sso.org.id):
        assert Membership.objects.get(org=sso.org, user__email=email).role == Role.ADMIN
    # Admins need a second factor before anything else.
    assert client.get(f"/orgs/{sso.org.slug}/")["Location"].startswith("/account/mfa/")
    client.post("/logout/")
    sso_login(client, oidc_provider, email, groups="auditors")
    with org_context(sso.org.id):
        assert Membership.objects.get(org=sso.org, user__email=email).role == Role.VIEWER


def test_a_replayed_state_is_refused(client, oidc_provider, sso_org):
    callback = sso_callback_path(oidc_provider, sso_begin(client, f"a@{sso_org.domain}"), email=f"a@{sso_org.domain}")
    assert client.get(callback).status_code == 302
    client.post("/logout/")
    replay = client.get(callback)
    assert replay.status_code == 400 and b"used already" in replay.content
    assert_no_session(client)
    assert sso_failures(sso_org.org)[-1]["reason"] == [None, "state_unknown"]


def test_a_forged_state_is_refused(client, oidc_provider, sso_org):
    sso_begin(client, f"a@{sso_org.domain}")
    response = client.get(f"/sso/{sso_org.org.slug}/callback/?code=x&state={secrets.token_urlsafe(32)}")
    assert response.status_code == 400 and b"does not belong to a sign-in started in this browser" in response.content
    assert_no_session(client)
    assert sso_failures(sso_org.org)[-1]["reason"] == [None, "state_unknown"]


def test_a_code_from_another_browser_is_refused(client, oidc_provider, sso_org):
    """Login CSRF: the attacker's code delivered with the victim's own state. The code was issued for the
    attacker's PKCE challenge and nonce, so the exchange fails and nobody is logged in."""
    attacker = Client()
    attacker_callback = sso_callback_path(
        oidc_provider, sso_begin(attacker, f"mallory@{sso_org.domain}"), email=f"mallory@{sso_org.domain}"
    )
    attacker_code = parse_qs(urlsplit(attacker_callback).query)["code"][0]
    victim_state = parse_qs(urlsplit(sso_begin(client, f"victim@{sso_org.domain}")).query)["state"][0]
    response = client.get(f"/sso/{sso_org.org.slug}/callback/?code={attacker_code}&state={victim_state}")
    assert response.status_code == 400 and b"refused the sign-in" in response.content
    assert_no_session(client)
    assert sso_failures(sso_org.org)[-1]["reason"] == [None, "code_rejected"]


def test_an_unknown_domain_is_refused_and_audited_for_a_known_person(client, org_a):
    org, owner = org_a
    response = client.post("/login/sso/", {"email": owner.email})
    assert response.status_code == 400 and b"No single sign-on is set up for" in response.content
    assert_no_session(client)
    with org_context(org.id):
        event = AuditEvent.objects.filter(org=org, action="auth.sso_failed").get()
    assert event.changes["reason"] == [None, "unknown_domain"]


def test_a_deactivated_member_is_refused(client, oidc_provider, sso_org, add_member):
    member = add_member(sso_org.org, "member", email=f"gone@{sso_org.domain}")
    member.is_active = False
    member.save()
    response = sso_login(client, oidc_provider, member.email)
    assert response.status_code == 400 and b"This account is deactivated" in response.content
    assert_no_session(client)
    assert sso_failures(sso_org.org)[-1]["reason"] == [None, "user_deactivated"]


@pytest.mark.parametrize(
    "email_at, sign_in, reason, message",
    [
        ("other.example", {}, "email_domain", b"is not in one of this org"),
        (None, {"email_unverified": True}, "email_unverified", b"has not verified this email"),
    ],
)
def test_an_identity_outside_the_org_is_refused(client, oidc_provider, sso_org, email_at, sign_in, reason, message):
    email = f"someone@{email_at or sso_org.domain}"
    response = sso_login(client, oidc_provider, email, login_email=f"someone@{sso_org.domain}", **sign_in)
    assert response.status_code == 400 and message in response.content
    assert_no_session(client)
    assert sso_failures(sso_org.org)[-1]["reason"] == [None, reason]
    assert not User.objects.filter(email=email).exists()


def test_an_sso_session_opens_only_its_own_org(client, oidc_provider, sso_org, org_b, add_member):
    other, _ = org_b
    email = f"both@{sso_org.domain}"
    add_member(other, "viewer", email=email)
    sso_login(client, oidc_provider, email)
    assert client.get(f"/orgs/{sso_org.org.slug}/").status_code == 200
    response = client.get(f"/orgs/{other.slug}/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_an_sso_only_org_refuses_passwords_except_its_break_glass_owner(client, oidc_provider, sso_org_for, add_member):
    sso = sso_org_for()
    password = "a long enough passphrase 42"
    sso.owner.set_password(password)
    sso.owner.save()
    member = add_member(sso.org, "member", email=f"m@{sso.domain}")
    member.set_password(password)
    member.save()
    with org_context(sso.org.id):
        sso_connection_save(org=sso.org, actor=SYSTEM, issuer=oidc_provider.issuer, client_id=sso.client_id,
                            client_secret=None, domains=[sso.domain], sso_only=True, break_glass_email=sso.owner.email)
    refused = client.post("/login/", {"username": member.email, "password": password})
    assert refused.status_code == 200 and b"signs in through single sign-on" in refused.content
    assert_no_session(client)
    response = client.post("/login/", {"username": sso.owner.email, "password": password})
    assert response.status_code == 302 and SESSION_KEY in client.session
    with org_context(sso.org.id):
        actions = list(AuditEvent.objects.filter(org=sso.org).values_list("action", flat=True))
    assert "auth.login_refused" in actions and "auth.break_glass_login" in actions
