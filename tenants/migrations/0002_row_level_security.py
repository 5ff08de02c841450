from django.db import migrations

from tenants.rls import ORG_MATCH, USER_MATCH, EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [
        EnableRowLevelSecurity("team"),
        # A user reads their own memberships in every org before choosing one.
        EnableRowLevelSecurity("membership", select_also=f"{USER_MATCH}"),
        EnableRowLevelSecurity("teammembership"),
        EnableRowLevelSecurity("teampermission"),
    ]
