"""System checks for the two database-side guarantees: the app role cannot bypass
row-level security, and every tenant-owned table has it."""
from django.apps import apps
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from tenants.rls import ISOLATION_POLICY
from tenants.scoping import OrgOwnedModel


def database_role_problems(cursor) -> list[str]:
    cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    role, is_superuser, bypasses_rls = cursor.fetchone()
    problems = []
    if is_superuser:
        problems.append(f"database role {role!r} is a superuser")
    if bypasses_rls:
        problems.append(f"database role {role!r} has BYPASSRLS")
    return problems


def database_role_assert_safe(using: str = "default") -> None:
    """Called at web and worker start-up: refuse to serve with a role that would make RLS vacuous."""
    with connections[using].cursor() as cursor:
        problems = database_role_problems(cursor)
    connections[using].close()
    if problems:
        raise ImproperlyConfigured(
            "Refusing to run: " + "; ".join(problems) + ". Connect as the application role (see DATABASE_URL)."
        )


def org_owned_models():
    return [m for m in apps.get_models() if issubclass(m, OrgOwnedModel) and not m._meta.proxy]


def tables_missing_rls(cursor) -> list[str]:
    """Tables of OrgOwnedModel subclasses that exist but lack ENABLE, FORCE or the isolation policy."""
    tables = [m._meta.db_table for m in org_owned_models()]
    cursor.execute(
        """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
               EXISTS (SELECT 1 FROM pg_policies p
                       WHERE p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = %s)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
        """,
        [ISOLATION_POLICY, tables],
    )
    return sorted(name for name, enabled, forced, has_policy in cursor.fetchall() if not (enabled and forced and has_policy))


@register("database", deploy=True)
def check_database_role(app_configs=None, **kwargs):
    try:
        with connections["default"].cursor() as cursor:
            problems = database_role_problems(cursor)
    except DatabaseError as exc:
        return [Warning(f"Could not check the database role: {exc}", id="tenants.W001")]
    return [
        Error(problem, hint="Run the app as the NOSUPERUSER NOBYPASSRLS application role.", id="tenants.E002")
        for problem in problems
    ]


@register("database")
def check_row_level_security(app_configs=None, **kwargs):
    try:
        with connections["default"].cursor() as cursor:
            missing = tables_missing_rls(cursor)
    except DatabaseError as exc:
        return [Warning(f"Could not check row-level security: {exc}", id="tenants.W002")]
    return [
        Error(
            f"Tenant table {table} lacks row-level security (ENABLE, FORCE and the {ISOLATION_POLICY} policy).",
            hint="Add tenants.rls.EnableRowLevelSecurity to the model's migration.",
            id="tenants.E001",
        )
        for table in missing
    ]
