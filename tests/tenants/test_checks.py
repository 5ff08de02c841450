import os
import subprocess
import sys

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from tenants.checks import (
    check_database_role,
    check_row_level_security,
    database_role_assert_safe,
    database_role_problems,
    tables_missing_rls,
)


@pytest.mark.django_db
def test_application_role_passes_the_role_check():
    assert check_database_role() == []
    database_role_assert_safe()


def test_a_superuser_connection_is_refused():
    with psycopg.connect(settings.ADMIN_DATABASE_URL) as admin, admin.cursor() as cursor:
        problems = database_role_problems(cursor)
    assert any("superuser" in problem for problem in problems)
    assert any("BYPASSRLS" in problem for problem in problems)


def _run_as_superuser(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.ADMIN_DATABASE_URL}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_refuses_a_superuser_database_role():
    result = _run_as_superuser("manage.py", "check", "--deploy")
    assert result.returncode != 0
    assert "tenants.E002" in result.stderr and "superuser" in result.stderr


def test_web_and_worker_refuse_to_start_as_a_superuser():
    result = _run_as_superuser("-c", "import config.wsgi")
    assert result.returncode != 0
    assert "Refusing to run" in result.stderr
    worker_start = "from config.celery import refuse_privileged_database_role as r; import django; django.setup(); r()"
    result = _run_as_superuser("-c", worker_start)
    assert result.returncode != 0
    assert "Refusing to run" in result.stderr


@pytest.mark.django_db
def test_every_tenant_table_has_row_level_security():
    assert check_row_level_security() == []


@pytest.mark.django_db(databases=["default", "owner"])
def test_rls_check_fails_for_a_tenant_table_without_it():
    owner = connections["owner"]
    with owner.cursor() as cursor:
        cursor.execute("ALTER TABLE tenants_team NO FORCE ROW LEVEL SECURITY")
        assert tables_missing_rls(cursor) == ["tenants_team"]
        cursor.execute("ALTER TABLE tenants_team FORCE ROW LEVEL SECURITY")
        cursor.execute("DROP POLICY org_isolation ON accounts_admintoken")
        assert tables_missing_rls(cursor) == ["accounts_admintoken"]
    # the test transaction on `owner` is rolled back, restoring both
