from django.db import migrations

from tenants.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("guardrails", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("guardrailpolicy"),
        EnableRowLevelSecurity("customdetector"),
    ]
