from django.db import migrations

from tenants.rls import SECRET_HASH_MATCH, EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_initial"), ("tenants", "0002_row_level_security")]

    operations = [
        # A presented secret is looked up by its hash before the org is known.
        EnableRowLevelSecurity("admintoken", select_also=SECRET_HASH_MATCH),
    ]
