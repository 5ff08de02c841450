"""Two-factor authentication: enrolment, the login challenge, backup codes, requirements and resets."""
import base64
import re

import pytest
from django.contrib.auth import SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from tenants.context import org_context
from tests.conftest import TEST_PASSWORD as PASSWORD
from tests.conftest import audit_actions, totp_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(owner_with_password):
    return owner_with_password[1]


@pytest.fixture
def enrolled(owner):
    """The owner with a confirmed authenticator app and backup codes."""
    device = TOTPDevice.objects.create(user=owner, name="app", confirmed=True)
    backup = StaticDevice.objects.create(user=owner, name="backup", confirmed=True)
    StaticToken.objects.bulk_create([StaticToken(device=backup, token=code) for code in ("aaaa2222", "bbbb3333")])
    return device


def password_login(client, user):
    return client.post("/login/", {"username": user.email, "password": PASSWORD})


def test_enrolment_shows_a_qr_code_and_confirms_with_a_code(client, org_a, owner, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    org, _ = org_a
    response = password_login(client, owner)
    assert response["Location"] == "/"
    page = client.get("/account/mfa/")
    assert b'src="data:image/svg+xml;base64,' in page.content and b"<script" not in page.content
    secret = re.search(rb'id="totp-secret">([A-Z2-7]+)<', page.content).group(1).decode()
    device = TOTPDevice.objects.get(user=owner, confirmed=False)
    assert device.bin_key == base64.b32decode(secret)
    wrong_code = f"{(int(totp_now(device)) + 1) % 10**6:06d}"
    wrong = client.post("/account/mfa/", {"action": "confirm", "code": wrong_code})
    assert wrong.status_code == 400 and b"does not match the QR code" in wrong.content
    confirmed = client.post("/account/mfa/", {"action": "confirm", "code": totp_now(device)})
    assert confirmed.status_code == 200 and b"Your backup codes" in confirmed.content
    assert len(re.findall(rb"<li><code>[a-z2-7]{8}</code></li>", confirmed.content)) == 10
    device.refresh_from_db()
    assert device.confirmed and client.get(f"/orgs/{org.slug}/").status_code == 200
    assert "auth.mfa_failed" in audit_actions(org) and "auth.mfa_enrol" in audit_actions(org)


def test_login_with_a_second_factor(client, org_a, owner, enrolled):
    org, _ = org_a
    response = password_login(client, owner)
    assert response["Location"].startswith("/login/mfa/")
    assert SESSION_KEY not in client.session and client.get("/").status_code == 302
    code = totp_now(enrolled)
    challenge = client.post("/login/mfa/", {"code": code})
    assert challenge.status_code == 302 and SESSION_KEY in client.session
    assert client.get(f"/orgs/{org.slug}/").status_code == 200
    assert client.get(f"/api/v1/orgs/{org.slug}/teams/").status_code == 200  # a verified session
    assert audit_actions(org)[-1] == "auth.login"


def test_a_wrong_or_reused_code_is_refused_and_throttled(client, org_a, owner, enrolled, settings):
    org, _ = org_a
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    code = totp_now(enrolled)
    password_login(client, owner)
    assert client.post("/login/mfa/", {"code": code}).status_code == 302
    client.post("/logout/")
    password_login(client, owner)
    reused = client.post("/login/mfa/", {"code": code})
    assert reused.status_code == 400 and b"wrong, expired or was already used" in reused.content
    assert SESSION_KEY not in client.session
    settings.OTP_TOTP_THROTTLE_FACTOR = 1  # django-otp's own back-off: 1, 2, 4, ... seconds after failures
    throttled = client.post("/login/mfa/", {"code": code})
    assert throttled.status_code == 429 and b"Too many wrong codes. Wait" in throttled.content
    assert SESSION_KEY not in client.session
    with org_context(org.id):
        reasons = [event.changes["reason"][1] for event in AuditEvent.objects.filter(org=org, action="auth.mfa_failed").order_by("created_at")]
    assert reasons == ["wrong_or_reused", "throttled"]


def test_a_backup_code_works_once(client, org_a, owner, enrolled):
    org, _ = org_a
    password_login(client, owner)
    assert client.post("/login/mfa/", {"code": "AAAA 2222"}).status_code == 302
    client.post("/logout/")
    password_login(client, owner)
    used = client.post("/login/mfa/", {"code": "aaaa2222"})
    assert used.status_code == 400 and b"already been used" in used.content and SESSION_KEY not in client.session
    assert "auth.backup_code_use" in audit_actions(org) and audit_actions(org)[-1] == "auth.mfa_failed"


def test_a_pending_login_expires(client, owner, enrolled, settings):
    settings.GATEHOUSE_LOGIN_PENDING_SECONDS = 0
    password_login(client, owner)
    response = client.post("/login/mfa/", {"code": totp_now(enrolled)})
    assert response.status_code == 302 and response["Location"] == "/login/" and SESSION_KEY not in client.session


def test_the_last_factor_cannot_be_removed_while_the_role_requires_one(client, console_as, org_a, add_member):
    org, owner = org_a
    console_as(owner)
    refused = client.post("/account/mfa/", {"action": "remove"}, follow=True)
    assert b"requires two-factor authentication, so you cannot remove your last factor" in refused.content
    assert TOTPDevice.objects.filter(user=owner).exists()
    member = add_member(org, "member")
    console_as(member)
    assert b"Two-factor authentication is off." in client.post("/account/mfa/", {"action": "remove"}, follow=True).content
    assert not TOTPDevice.objects.filter(user=member, confirmed=True).exists()


def test_an_org_can_require_mfa_for_every_member(org_a, add_member, api_as, client):
    org, owner = org_a
    member = add_member(org, "member")
    client.force_login(member)
    assert client.get(f"/orgs/{org.slug}/").status_code == 200
    response = api_as(owner).patch(f"/api/v1/orgs/{org.slug}/", {"mfa_required": True}, format="json")
    assert response.status_code == 200 and response.json()["mfa_required"] is True
    assert client.get(f"/orgs/{org.slug}/")["Location"].startswith("/account/mfa/")


def test_api_needs_a_verified_session_and_admin_tokens_need_one_too(client, org_a, add_member):
    org, owner = org_a
    client.force_login(owner)
    response = client.get(f"/api/v1/orgs/{org.slug}/teams/")
    assert response.status_code == 403 and "not been verified with a second factor" in response.json()["detail"]
    token = client.post(f"/api/v1/orgs/{org.slug}/tokens/", {"name": "ci"}, content_type="application/json")
    assert token.status_code == 403


def test_an_admin_resets_a_members_mfa(org_a, org_b, add_member, api_as, client):
    org, owner = org_a
    member = add_member(org, "member")
    member_client = api_as(member)
    assert member_client.get(f"/api/v1/orgs/{org.slug}/teams/").status_code == 200
    membership_id = api_as(owner).get(f"/api/v1/orgs/{org.slug}/members/").json()["results"]
    membership_id = next(row["id"] for row in membership_id if row["email"] == member.email)
    other_owner = org_b[1]
    assert api_as(other_owner).delete(f"/api/v1/orgs/{org.slug}/members/{membership_id}/mfa/").status_code == 404
    admin = api_as(add_member(org, "admin"))
    assert admin.delete(f"/api/v1/orgs/{org.slug}/members/{membership_id}/mfa/").status_code == 204
    assert not TOTPDevice.objects.filter(user=member).exists()
    assert member_client.get(f"/api/v1/orgs/{org.slug}/teams/").status_code == 401  # logged out everywhere
    assert "member.mfa_reset" in audit_actions(org)
    owner_membership = next(row["id"] for row in api_as(owner).get(f"/api/v1/orgs/{org.slug}/members/").json()["results"]
                            if row["email"] == owner.email)
    assert admin.delete(f"/api/v1/orgs/{org.slug}/members/{owner_membership}/mfa/").status_code == 403


def test_mfa_of_a_person_in_several_orgs_cannot_be_reset_from_one(org_a, org_b, add_member, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    shared = add_member(a, "member")
    add_member(b, "viewer", email=shared.email)
    api_as(shared)
    membership_id = next(row["id"] for row in api_as(owner_a).get(f"/api/v1/orgs/{a.slug}/members/").json()["results"]
                         if row["email"] == shared.email)
    response = api_as(owner_a).delete(f"/api/v1/orgs/{a.slug}/members/{membership_id}/mfa/")
    assert response.status_code == 409 and "other orgs" in response.json()["detail"]
    assert TOTPDevice.objects.filter(user=shared).exists()


def test_console_reset_button(client, console_as, org_a, add_member):
    org, owner = org_a
    member = add_member(org, "member")
    TOTPDevice.objects.create(user=member, name="app", confirmed=True)
    console_as(owner)
    page = client.get(f"/orgs/{org.slug}/")
    membership_id = re.search(rb'name="mfa-reset-membership" value="([0-9a-f-]+)"', page.content).group(1).decode()
    response = client.post(f"/orgs/{org.slug}/", {"mfa-reset-membership": membership_id}, follow=True)
    assert b"reset; they set it up again" in response.content
    assert not TOTPDevice.objects.filter(user=member).exists()


def test_the_admin_site_needs_a_verified_session(client, console_as, org_a):
    _, owner = org_a
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client.force_login(owner)
    assert client.get("/admin/").status_code == 302
    console_as(owner)
    assert client.get("/admin/").status_code == 200
