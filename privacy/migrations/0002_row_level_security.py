from django.db import migrations

from tenants.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("privacy", "0001_data_subject_requests")]

    operations = [EnableRowLevelSecurity("datasubjectrequest"), EnableRowLevelSecurity("datasubjectarchive")]
