"""The audit tables become append-only (see audit/append_only.py and docs/audit.md)."""
from django.conf import settings
from django.db import migrations

from audit import append_only

TABLES = ("audit_auditevent", "audit_auditverification", "audit_changelogentry")
# django-auditlog's own table stays empty (AUDITLOG_LOGENTRY_MODEL points to ours): nothing may write to it.
UNUSED_AUDITLOG_TABLE = "auditlog_logentry"


def _app_role() -> str:
    return settings.DATABASES["default"]["USER"]


def forwards(apps, schema_editor):
    schema_editor.execute(append_only.GUARD_FUNCTION_SQL, None)  # None: the % in it are not placeholders
    for table in TABLES:
        for statement in append_only.triggers_sql(table) + append_only.privileges_sql(table, _app_role()):
            schema_editor.execute(statement)
    schema_editor.execute(
        f"REVOKE ALL ON {UNUSED_AUDITLOG_TABLE} FROM {append_only.quote_identifier(_app_role())}"
    )


def backwards(apps, schema_editor):
    app_role = append_only.quote_identifier(_app_role())
    for table in TABLES:
        for statement in append_only.drop_triggers_sql(table):
            schema_editor.execute(statement)
        schema_editor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
    schema_editor.execute(append_only.DROP_GUARD_FUNCTION_SQL)
    schema_editor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {UNUSED_AUDITLOG_TABLE} TO {app_role}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_change_history_and_verification"), ("auditlog", "0017_add_actor_email")]

    operations = [migrations.RunPython(forwards, backwards)]
