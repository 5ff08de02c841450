"""Append-only audit tables, in PostgreSQL (no Django imports: ops/services.py uses it before Django starts).

Two walls, as for tenancy:
- privileges: the application role keeps SELECT and INSERT only (the schema's default privileges would
  also give it UPDATE and DELETE);
- triggers: UPDATE, DELETE and TRUNCATE raise for every role, the owner included, unless the session
  has switched to the maintenance role with `SET ROLE gatehouse_audit_maintenance`. That role cannot log
  in; a superuser grants it to a named person for a maintenance window (docs/audit.md).

The owner can still drop or disable the triggers (it owns the tables); the hash chain is what makes
such a change visible.
"""

MAINTENANCE_ROLE = "gatehouse_audit_maintenance"
GUARD_FUNCTION = "audit_append_only_guard"
ROW_TRIGGER = "audit_append_only_rows"
TRUNCATE_TRIGGER = "audit_append_only_truncate"

GUARD_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {GUARD_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user = '{MAINTENANCE_ROLE}' THEN
        IF TG_LEVEL = 'STATEMENT' THEN
            RETURN NULL;
        ELSIF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit table % is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Maintenance runs as SET ROLE {MAINTENANCE_ROLE}; see docs/audit.md.';
END
$$
"""
DROP_GUARD_FUNCTION_SQL = f"DROP FUNCTION IF EXISTS {GUARD_FUNCTION}()"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def triggers_sql(table: str) -> list[str]:
    table = quote_identifier(table)
    return [
        f"CREATE TRIGGER {ROW_TRIGGER} BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {GUARD_FUNCTION}()",
        f"CREATE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {GUARD_FUNCTION}()",
    ]


def drop_triggers_sql(table: str) -> list[str]:
    table = quote_identifier(table)
    return [f"DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON {table}", f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {table}"]


def privileges_sql(table: str, app_role: str) -> list[str]:
    """The application role may only read and append; the maintenance role (when it exists) may also
    change and delete rows, still subject to row-level security (it sets app.current_org per org)."""
    table = quote_identifier(table)
    return [
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {quote_identifier(app_role)}",
        f"""DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{MAINTENANCE_ROLE}') THEN
                GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {MAINTENANCE_ROLE};
            END IF;
        END $$""",
    ]


# Which tables are append-only: those that carry the row trigger (used by ops/services.py to keep
# re-granted default privileges from undoing the REVOKE).
APPEND_ONLY_TABLES_SQL = f"""
SELECT c.relname FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgname = '{ROW_TRIGGER}' AND n.nspname = current_schema()
"""
