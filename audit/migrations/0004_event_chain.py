"""Audit events get a per-org hash chain (seq, prev_hash, hash) and a request id.

Existing events are chained in the order they were written (created_at, then id), signed with
GATEHOUSE_AUDIT_HMAC_KEY: set it before migrating (`python -m ops.services ensure` does).
"""
from django.db import migrations, models


def chain_existing_events(apps, schema_editor):
    from audit.chain import EVENT_FIELDS, GENESIS_HASH, mac

    alias = schema_editor.connection.alias
    Org = apps.get_model("tenants", "Org")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    with schema_editor.connection.cursor() as cursor:
        for org_id in Org.objects.using(alias).values_list("id", flat=True):
            # Row-level security is forced on the owner too: work inside each org's context.
            cursor.execute("SELECT set_config('app.current_org', %s, true)", [str(org_id)])
            previous = GENESIS_HASH
            events = AuditEvent.objects.using(alias).filter(org_id=org_id).order_by("created_at", "id")
            for seq, event in enumerate(events.iterator(), start=1):
                event.seq, event.prev_hash = seq, previous
                event.hash = mac({name: getattr(event, name) for name in EVENT_FIELDS})
                event.save(using=alias, update_fields=["seq", "prev_hash", "hash"])
                previous = event.hash
        cursor.execute("SELECT set_config('app.current_org', '', true)")


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_row_level_security"), ("tenants", "0002_row_level_security")]

    operations = [
        migrations.AddField(model_name="auditevent", name="seq", field=models.BigIntegerField(null=True)),
        migrations.AddField(
            model_name="auditevent", name="prev_hash", field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent", name="hash", field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent", name="request_id", field=models.CharField(blank=True, max_length=128),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor_kind",
            field=models.CharField(
                choices=[("user", "User"), ("admin_token", "Admin token"), ("master_key", "Master key"), ("system", "System")],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="changes",
            field=models.JSONField(blank=True, default=dict, help_text="Field: [before, after], secrets masked."),
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
        migrations.AlterField(model_name="auditevent", name="seq", field=models.BigIntegerField()),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["org", "target_type", "target_id"], name="audit_event_target"),
        ),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(fields=("org", "seq"), name="audit_event_seq_unique_per_org"),
        ),
    ]
