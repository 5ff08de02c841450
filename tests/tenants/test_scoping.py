import pytest
from django.db import connection, transaction

from tenants.context import MissingOrgContext, current_org_id, org_context
from tenants.models import Team
from tenants.services import team_create
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db


def _database_org() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('app.current_org', true)")
        return cursor.fetchone()[0] or ""


def test_scoped_manager_refuses_to_run_without_an_org_context():
    with pytest.raises(MissingOrgContext):
        list(Team.objects.all())


def test_scoped_manager_filters_to_the_current_org(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    with org_context(a.id):
        team_create(org=a, slug="one", name="One", actor=SYSTEM)
    with org_context(b.id):
        team_create(org=b, slug="two", name="Two", actor=SYSTEM)
        assert [t.slug for t in Team.objects.all()] == ["two"]
        # Even an explicit filter on the other org finds nothing.
        assert not Team.objects.filter(org=a).exists()


def test_nested_contexts_restore_the_outer_org_in_python_and_postgres(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    with org_context(a.id):
        with org_context(b.id):
            assert current_org_id() == b.id
            assert _database_org() == str(b.id)
        assert current_org_id() == a.id
        assert _database_org() == str(a.id)
    assert current_org_id() is None


def test_context_ends_with_its_transaction(org_a):
    a, _ = org_a
    with transaction.atomic():
        with org_context(a.id):
            pass
        assert _database_org() == ""


def test_an_error_inside_a_nested_context_rolls_back_to_the_outer_org(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    with org_context(a.id):
        with pytest.raises(ZeroDivisionError):
            with org_context(b.id):
                1 / 0
        assert current_org_id() == a.id
        assert _database_org() == str(a.id)
