from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_request_logging_levels")]

    operations = [
        migrations.AddField(model_name="org", name="mfa_required", field=models.BooleanField(default=False)),
    ]
