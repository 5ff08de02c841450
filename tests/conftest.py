"""Test set-up: a fresh test database created and migrated by the owner role, while
every test connects as the application role (NOSUPERUSER NOBYPASSRLS), so that
row-level security is really in force."""
import os
import uuid

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from audit.actors import Actor
from ops.services import database_prepare

TEST_DATABASE_PREFIX = "test_"


def _test_database_url(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker):
    # A suffix lets two checkouts on one machine run their suites at the same time.
    name = TEST_DATABASE_PREFIX + settings.DATABASES["default"]["NAME"] + os.environ.get("GATEHOUSE_TEST_DB_SUFFIX", "")
    for alias in ("default", "owner"):
        settings.DATABASES[alias]["NAME"] = name
        connections[alias].settings_dict["NAME"] = name
    with django_db_blocker.unblock():
        database_prepare(
            admin_url=settings.ADMIN_DATABASE_URL,
            app_url=settings.DATABASE_URL,
            owner_url=settings.OWNER_DATABASE_URL,
            database=name,
            recreate=True,
        )
        call_command("migrate", database="owner", verbosity=0, interactive=False)
        connections["owner"].close()
    yield


@pytest.fixture(scope="session")
def test_database_url(django_db_setup) -> str:
    return _test_database_url(settings.DATABASE_URL, settings.DATABASES["default"]["NAME"])


SYSTEM = Actor.system("tests")


def unique_slug(prefix: str = "org") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_org(db):
    """make_org(owner_email=...) -> (org, owner_user), built through the service."""
    from django.contrib.auth import get_user_model

    from tenants.services import org_create

    def make(*, slug: str | None = None, owner_email: str | None = None, data_region: str = "us"):
        slug = slug or unique_slug()
        owner_email = owner_email or f"owner@{slug}.example"
        org, _ = org_create(slug=slug, name=slug.title(), data_region=data_region, owner_email=owner_email, actor=SYSTEM)
        return org, get_user_model().objects.get(email=owner_email)

    return make


@pytest.fixture
def add_member(db):
    """add_member(org, role, email=None) -> user, through the invite service."""
    from django.contrib.auth import get_user_model

    from tenants.context import org_context
    from tenants.models import Role
    from tenants.services import member_invite

    def add(org, role: str, email: str | None = None):
        email = email or f"{role}-{uuid.uuid4().hex[:6]}@{org.slug}.example"
        with org_context(org.id):
            member_invite(org=org, email=email, role=role, actor=SYSTEM, acting_role=Role.OWNER)
        return get_user_model().objects.get(email=email)

    return add


def session_verify(client, user) -> None:
    """Marks a test client's console session as verified with a second factor, as the MFA challenge does
    (the user gets a confirmed authenticator app if they have none)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="tests", confirmed=True
    )
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


@pytest.fixture
def api_as():
    """api_as(user) -> an APIClient logged in with a console session verified with a second factor."""

    from rest_framework.test import APIClient

    def client_for(user) -> APIClient:
        client = APIClient()
        client.force_login(user)
        session_verify(client, user)
        return client

    return client_for


@pytest.fixture
def console_as(client):
    """console_as(user) -> the Django test client, logged in to the console with a verified session."""

    def login(user):
        client.force_login(user)
        session_verify(client, user)
        return client

    return login


TEST_PASSWORD = "correct horse battery staple"


@pytest.fixture
def owner_with_password(org_a):
    """org_a as (org, owner), the owner with the password TEST_PASSWORD."""
    org, owner = org_a
    owner.set_password(TEST_PASSWORD)
    owner.save()
    return org, owner


@pytest.fixture
def org_a(make_org):
    return make_org(slug=unique_slug("a"))


@pytest.fixture
def org_b(make_org):
    return make_org(slug=unique_slug("b"))


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """Database access outside the per-test transaction, for data another process must see."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="session")
def celery_worker_queue(test_database_url):
    """A real Celery worker process on the real broker, consuming a queue of its own."""
    import os
    import subprocess
    import sys
    import time

    from config.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": test_database_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues", queue,
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        env=env,
    )
    deadline = time.monotonic() + 60
    while not app.control.ping(timeout=0.5, destination=None) and time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
    try:
        yield queue
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """A real OpenID Connect provider (npm `oidc-provider`, tests/oidc/provider.js) on 127.0.0.1."""
    from tests.oidc.fixture import OidcProvider

    provider = OidcProvider().start(tmp_path_factory.mktemp("oidc") / "provider.log")
    try:
        yield provider
    finally:
        provider.stop()


def totp_now(device) -> str:
    """The current code of a django-otp TOTP device, as an authenticator app would show it."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def audit_actions(org) -> list[str]:
    """The org's audit event actions, oldest first."""
    from audit.models import AuditEvent
    from tenants.context import org_context

    with org_context(org.id):
        return list(AuditEvent.objects.filter(org=org).order_by("created_at").values_list("action", flat=True))
