"""Console sessions: listing and revoking, idle and absolute limits, logout everywhere, lockout."""
import datetime
import time

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from accounts.models import UserSession
from accounts.session_store import AUTH_AT_KEY
from tests.conftest import TEST_PASSWORD as PASSWORD
from tests.conftest import audit_actions

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(org_a, add_member):
    """A viewer (no second factor required) with a password."""
    org, _ = org_a
    user = add_member(org, "viewer")
    user.set_password(PASSWORD)
    user.save()
    return user


def logged_in_client(user) -> Client:
    client = Client(HTTP_USER_AGENT="pytest-browser")
    response = client.post("/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302 and SESSION_KEY in client.session
    return client


def test_sessions_are_listed_and_another_one_can_be_revoked(org_a, viewer):
    org, _ = org_a
    laptop, phone = logged_in_client(viewer), logged_in_client(viewer)
    page = laptop.get("/account/sessions/")
    assert page.content.count(b"pytest-browser") == 2 and b"this session" in page.content
    assert phone.session.session_key.encode() not in page.content  # the key is the credential: never shown
    stored = UserSession.objects.get(session_key=phone.session.session_key)
    assert stored.user_id == viewer.pk and stored.auth_method == "password" and stored.ip == "127.0.0.1"
    from accounts.selectors import user_session_public_id

    response = laptop.post("/account/sessions/", {"session": user_session_public_id(phone.session.session_key)}, follow=True)
    assert b"Session revoked." in response.content
    assert phone.get(f"/orgs/{org.slug}/").status_code == 302
    assert laptop.get(f"/orgs/{org.slug}/").status_code == 200
    assert "auth.session_revoke" in audit_actions(org)
    other = logged_in_client(viewer)
    laptop.post("/account/sessions/", {"action": "revoke-others"})
    assert other.get("/").status_code == 302 and laptop.get("/").status_code in (200, 302)
    assert SESSION_KEY in laptop.session


def test_idle_timeout_is_fifteen_minutes_and_slides(settings, viewer):
    assert settings.SESSION_COOKIE_AGE == 15 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    client = logged_in_client(viewer)
    session = UserSession.objects.get(session_key=client.session.session_key)
    UserSession.objects.filter(pk=session.pk).update(expire_date=timezone.now() + datetime.timedelta(seconds=30))
    client.get("/account/sessions/")
    assert UserSession.objects.get(pk=session.pk).expire_date > timezone.now() + datetime.timedelta(minutes=14)
    UserSession.objects.filter(pk=session.pk).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    response = client.get("/account/sessions/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_absolute_lifetime_ends_even_a_busy_session(settings, viewer):
    client = logged_in_client(viewer)
    session = client.session
    session[AUTH_AT_KEY] = time.time() - settings.GATEHOUSE_SESSION_MAX_AGE_SECONDS - 1
    session.save()
    response = client.get("/account/sessions/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/login/")
    assert b"Your session reached its maximum age" in response.content


def test_a_password_change_logs_out_everywhere(viewer):
    client = logged_in_client(viewer)
    viewer.set_password("an entirely new passphrase")
    viewer.save()
    assert not UserSession.objects.filter(user=viewer).exists()
    assert client.get("/account/sessions/").status_code == 302


def test_a_role_change_logs_out_everywhere(org_a, viewer, api_as):
    org, owner = org_a
    client = logged_in_client(viewer)
    members = api_as(owner).get(f"/api/v1/orgs/{org.slug}/members/").json()["results"]
    membership_id = next(row["id"] for row in members if row["email"] == viewer.email)
    assert api_as(owner).patch(f"/api/v1/orgs/{org.slug}/members/{membership_id}/", {"role": "member"},
                               format="json").status_code == 200
    assert client.get("/account/sessions/").status_code == 302


def test_logout_is_audited(org_a, viewer):
    org, _ = org_a
    client = logged_in_client(viewer)
    client.post("/logout/")
    assert audit_actions(org)[-2:] == ["auth.login", "auth.logout"]


def test_failed_logins_lock_the_account_and_are_audited(client, org_a, viewer, settings):
    org, _ = org_a
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        failed = client.post("/login/", {"username": viewer.email.upper(), "password": "wrong"})
        assert failed.status_code == 200 and b"Please enter a correct email and password" in failed.content
    locked = client.post("/login/", {"username": viewer.email, "password": "wrong"})
    assert locked.status_code == 429 and b"Too many failed logins" in locked.content
    refused = client.post("/login/", {"username": viewer.email, "password": PASSWORD})
    assert refused.status_code == 429 and SESSION_KEY not in client.session
    recorded = audit_actions(org)
    assert recorded.count("auth.login_failed") == settings.AXES_FAILURE_LIMIT - 1
    assert recorded.count("auth.lockout") == 2


def test_api_session_of_a_verified_user_still_obeys_session_binding(org_a, api_as, viewer):
    """A verified session reaches the API; a session that ended does not."""
    org, _ = org_a
    client = api_as(viewer)
    assert client.get(f"/api/v1/orgs/{org.slug}/teams/").status_code == 200
    UserSession.objects.filter(user=viewer).delete()
    assert client.get(f"/api/v1/orgs/{org.slug}/teams/").status_code in (401, 403)
