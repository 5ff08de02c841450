from django.db import migrations

from tenants.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("spend", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("budget"),
        EnableRowLevelSecurity("ratelimit"),
        EnableRowLevelSecurity("spendentry"),
    ]
