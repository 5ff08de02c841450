"""Audit test helpers: committed orgs with events, and the documented maintenance session."""
import contextlib

import psycopg
import pytest
from django.conf import settings

from audit.append_only import MAINTENANCE_ROLE
from audit.services import audit_event_record
from tenants.context import org_context
from tests.conftest import SYSTEM, _test_database_url, unique_slug


@contextlib.contextmanager
def maintenance_session(org_id):
    """The maintenance procedure of docs/audit.md: a session that switches to the maintenance role
    (here a superuser's, which may SET ROLE to any role) and works inside one org. Commits at the end."""
    url = _test_database_url(settings.ADMIN_DATABASE_URL, settings.DATABASES["default"]["NAME"])
    with psycopg.connect(url) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {MAINTENANCE_ROLE}")
            cursor.execute("SELECT set_config('app.current_org', %s, true)", [str(org_id)])
            yield cursor
        connection.commit()


@pytest.fixture
def committed_org(committed):
    """An org (and its first two events) committed, so that other connections see it."""
    from tenants.services import org_create

    org, _ = org_create(
        slug=unique_slug("audit"), name="Audit", data_region="us", owner_email=f"{unique_slug('o')}@x.example",
        actor=SYSTEM,
    )
    return org


def events_record(org, count: int, *, action: str = "test.event") -> list:
    with org_context(org.id):
        return [
            audit_event_record(org_id=org.id, actor=SYSTEM, action=action, changes={"n": [None, index]})
            for index in range(count)
        ]
