from django.db import migrations

from tenants.rls import SECRET_HASH_MATCH, EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("keys", "0001_initial"), ("tenants", "0002_row_level_security")]

    operations = [
        EnableRowLevelSecurity("providercredential"),
        EnableRowLevelSecurity("deployment"),
        EnableRowLevelSecurity("modelalias"),
        EnableRowLevelSecurity("aliasroute"),
        EnableRowLevelSecurity("virtualkey"),
        # A presented virtual key is looked up by its hash before the org is known.
        EnableRowLevelSecurity("virtualkeysecret", select_also=SECRET_HASH_MATCH),
    ]
