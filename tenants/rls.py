"""Row-level security for tenant tables, as a migration operation.

Policy: a row is visible and writable only when its `org_id` equals the transaction's
`app.current_org` (see `tenants.context`). Without a context the setting is empty,
`NULLIF(...)::uuid` is NULL and no row matches: the database fails closed.

`select_also` adds a read-only policy for the few lookups that happen before the org
is known (a user's own memberships, a secret's hash); it never allows a write.
"""
from django.db import migrations

ORG_MATCH = "org_id = NULLIF(current_setting('app.current_org', true), '')::uuid"
USER_MATCH = "user_id = NULLIF(current_setting('app.current_user_id', true), '')::bigint"
SECRET_HASH_MATCH = "secret_hash = NULLIF(current_setting('app.secret_hash', true), '')"
ISOLATION_POLICY = "org_isolation"
LOOKUP_POLICY = "org_lookup"


class EnableRowLevelSecurity(migrations.operations.base.Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, select_also: str = ""):
        self.model_name = model_name
        self.select_also = select_also

    def state_forwards(self, app_label, state):
        pass

    @staticmethod
    def _table(app_label, model_name, schema_editor, state):
        return schema_editor.quote_name(state.apps.get_model(app_label, model_name)._meta.db_table)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        table = self._table(app_label, self.model_name, schema_editor, to_state)
        schema_editor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        schema_editor.execute(
            f"CREATE POLICY {ISOLATION_POLICY} ON {table} USING ({ORG_MATCH}) WITH CHECK ({ORG_MATCH})"
        )
        if self.select_also:
            schema_editor.execute(f"CREATE POLICY {LOOKUP_POLICY} ON {table} FOR SELECT USING ({self.select_also})")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        table = self._table(app_label, self.model_name, schema_editor, from_state)
        schema_editor.execute(f"DROP POLICY IF EXISTS {LOOKUP_POLICY} ON {table}")
        schema_editor.execute(f"DROP POLICY IF EXISTS {ISOLATION_POLICY} ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")

    def describe(self):
        return f"Enable row-level security on {self.model_name}"

    def deconstruct(self):
        kwargs = {"model_name": self.model_name}
        if self.select_also:
            kwargs["select_also"] = self.select_also
        return self.__class__.__name__, [], kwargs
