from django.db import migrations

from tenants.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("requestlogs", "0001_initial"), ("tenants", "0002_row_level_security")]

    operations = [EnableRowLevelSecurity("requestlog"), EnableRowLevelSecurity("requestdailyusage")]
