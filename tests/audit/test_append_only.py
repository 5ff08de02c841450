"""The audit tables are append-only in PostgreSQL: the application role lacks the privileges, and
triggers stop the owner too; only a session switched to the maintenance role gets through."""
import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction

from audit.append_only import MAINTENANCE_ROLE
from audit.services import audit_chain_verify
from ops.services import database_prepare
from tenants.context import org_context
from tenants.services import team_create
from tests.audit.conftest import events_record, maintenance_session
from tests.conftest import SYSTEM

AUDIT_TABLES = ("audit_auditevent", "audit_auditverification", "audit_changelogentry")
CHANGES = {
    "UPDATE": "UPDATE {table} SET org_id = org_id",
    "DELETE": "DELETE FROM {table}",
    "TRUNCATE": "TRUNCATE {table}",
}


def _failure(using: str, org, sql: str) -> str:
    """Runs `sql` in the org's context on a connection and returns the database's refusal."""
    with pytest.raises(DatabaseError) as refused:
        with transaction.atomic(using=using):
            with connections[using].cursor() as cursor:
                cursor.execute("SELECT set_config('app.current_org', %s, true)", [str(org.id)])
                cursor.execute(sql)
    return str(refused.value)


@pytest.mark.django_db(databases=["default", "owner"])
@pytest.mark.parametrize("table", AUDIT_TABLES)
@pytest.mark.parametrize("operation", CHANGES)
def test_the_application_role_may_not_change_or_delete_audit_rows(org_a, table, operation):
    a, _ = org_a
    assert "permission denied" in _failure("default", a, CHANGES[operation].format(table=table))


@pytest.mark.django_db
@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_the_application_role_may_read_and_append(table):
    with connection.cursor() as cursor:
        for privilege, expected in (("SELECT", True), ("INSERT", True), ("UPDATE", False), ("DELETE", False),
                                    ("TRUNCATE", False)):
            cursor.execute("SELECT has_table_privilege(current_user, %s, %s)", [table, privilege])
            assert cursor.fetchone()[0] is expected, (table, privilege)


@pytest.mark.django_db
def test_django_auditlogs_own_table_is_closed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege(current_user, 'auditlog_logentry', 'INSERT')")
        assert cursor.fetchone()[0] is False


def test_the_owner_is_stopped_by_the_triggers(committed_org):
    events_record(committed_org, 1)  # row triggers need rows: an event, a verification, a change entry
    with org_context(committed_org.id):
        audit_chain_verify(org=committed_org, actor=SYSTEM)
        team_create(org=committed_org, slug="t", name="T", actor=SYSTEM)
    for table in AUDIT_TABLES:
        for operation, sql in CHANGES.items():
            message = _failure("owner", committed_org, sql.format(table=table))
            assert f"audit table {table} is append-only: {operation} is not allowed" in message, message
    connections["owner"].close()
    with org_context(committed_org.id):
        assert len(events_record(committed_org, 1)) == 1  # nothing was changed, the chain goes on


def test_the_owner_cannot_switch_to_the_maintenance_role(committed_org):
    message = _failure("owner", committed_org, f"SET ROLE {MAINTENANCE_ROLE}")
    assert "permission denied" in message
    connections["owner"].close()


def test_the_maintenance_role_cannot_log_in_and_may_change_rows_of_one_org(committed_org):
    url = settings.DATABASE_URL.replace(settings.DATABASES["default"]["USER"], MAINTENANCE_ROLE, 1)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5).close()
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute("UPDATE audit_auditevent SET user_agent = 'maintained' WHERE seq = 1")
        assert cursor.rowcount == 1
        cursor.execute("SELECT set_config('app.current_org', '', true)")
        cursor.execute("DELETE FROM audit_auditevent")
        assert cursor.rowcount == 0, "row-level security still applies to maintenance"


def test_preparing_the_database_again_keeps_the_audit_tables_append_only(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        database_prepare(
            admin_url=settings.ADMIN_DATABASE_URL, app_url=settings.DATABASE_URL, owner_url=settings.OWNER_DATABASE_URL,
            database=settings.DATABASES["default"]["NAME"],
        )
        with connection.cursor() as cursor:
            for table in AUDIT_TABLES:
                cursor.execute("SELECT has_table_privilege(current_user, %s, 'UPDATE')", [table])
                assert cursor.fetchone()[0] is False, table
            cursor.execute("SELECT has_table_privilege(current_user, 'tenants_team', 'UPDATE')")
            assert cursor.fetchone()[0] is True
