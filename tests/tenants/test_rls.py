"""Row-level security proven from the database side: raw SQL as the application role,
with the Python org filter out of the picture."""
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from tenants.context import org_context
from tenants.services import team_create
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db


def _count(sql: str, params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


@pytest.fixture
def two_orgs_with_teams(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    with org_context(a.id):
        team_create(org=a, slug="alpha", name="Alpha", actor=SYSTEM)
    with org_context(b.id):
        team_create(org=b, slug="beta", name="Beta", actor=SYSTEM)
    return a, b


def test_tests_run_as_a_role_that_cannot_bypass_rls():
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)
        cursor.execute("SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)")
        assert cursor.fetchone()[0] == 0, "the application role must own nothing"


def test_org_sees_none_of_another_orgs_rows(two_orgs_with_teams):
    a, b = two_orgs_with_teams
    with org_context(a.id):
        assert _count("SELECT count(*) FROM tenants_team") == 1
        assert _count("SELECT count(*) FROM tenants_team WHERE org_id = %s", [b.id]) == 0
        assert _count("SELECT count(*) FROM tenants_membership WHERE org_id = %s", [b.id]) == 0
        assert _count("SELECT count(*) FROM audit_auditevent WHERE org_id = %s", [b.id]) == 0


def test_nothing_is_visible_without_an_org_context(two_orgs_with_teams):
    with transaction.atomic():
        for table in ("tenants_team", "tenants_membership", "tenants_teammembership", "audit_auditevent",
                      "accounts_admintoken", "tenants_teampermission"):
            assert _count(f"SELECT count(*) FROM {table}") == 0, table


def test_cannot_insert_a_row_for_another_org(two_orgs_with_teams):
    a, b = two_orgs_with_teams
    with org_context(a.id):
        with pytest.raises(DatabaseError, match="row-level security"):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO tenants_team (id, org_id, slug, name, created_at) VALUES (%s, %s, 'evil', 'Evil', now())",
                        [uuid.uuid4(), b.id],
                    )


def test_cannot_move_a_row_into_another_org_or_touch_its_rows(two_orgs_with_teams):
    a, b = two_orgs_with_teams
    with org_context(a.id):
        with pytest.raises(DatabaseError, match="row-level security"):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("UPDATE tenants_team SET org_id = %s", [b.id])
        with connection.cursor() as cursor:
            cursor.execute("UPDATE tenants_team SET name = 'hijacked' WHERE org_id = %s", [b.id])
            assert cursor.rowcount == 0
            cursor.execute("DELETE FROM tenants_team WHERE org_id = %s", [b.id])
            assert cursor.rowcount == 0
    with org_context(b.id):
        assert _count("SELECT count(*) FROM tenants_team WHERE name = 'Beta'") == 1


def test_a_forged_context_value_sees_nothing(two_orgs_with_teams):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.current_org', %s, true)", [str(uuid.uuid4())])
        assert _count("SELECT count(*) FROM tenants_team") == 0


def test_user_lookup_policy_is_read_only_and_limited_to_that_user(two_orgs_with_teams, add_member):
    a, b = two_orgs_with_teams
    member = add_member(a, "member")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.current_user_id', %s, true)", [str(member.pk)])
            assert _count("SELECT count(*) FROM tenants_membership") == 1
            cursor.execute("UPDATE tenants_membership SET role = 'owner'")
            assert cursor.rowcount == 0
            cursor.execute("DELETE FROM tenants_membership")
            assert cursor.rowcount == 0
