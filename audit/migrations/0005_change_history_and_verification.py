import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

from tenants.rls import EnableRowLevelSecurity

ACTOR_KINDS = [("user", "User"), ("admin_token", "Admin token"), ("master_key", "Master key"), ("system", "System")]


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_event_chain"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("tenants", "0002_row_level_security"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditVerification",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("ok", models.BooleanField()),
                ("events_checked", models.BigIntegerField(default=0)),
                ("head_seq", models.BigIntegerField(default=0)),
                ("head_hash", models.CharField(blank=True, max_length=64)),
                ("failure_seq", models.BigIntegerField(blank=True, null=True)),
                ("failure_kind", models.CharField(blank=True, max_length=16)),
                ("message", models.TextField(blank=True)),
                ("actor_label", models.CharField(blank=True, max_length=254)),
                ("hash", models.CharField(max_length=64)),
                (
                    "org",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.org"),
                ),
            ],
            options={"indexes": [models.Index(fields=["org", "created_at"], name="audit_verification_time")]},
        ),
        migrations.CreateModel(
            name="ChangeLogEntry",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("object_pk", models.CharField(db_index=True, max_length=255, verbose_name="object pk")),
                ("object_id", models.BigIntegerField(blank=True, db_index=True, null=True, verbose_name="object id")),
                ("object_repr", models.TextField(verbose_name="object representation")),
                ("serialized_data", models.JSONField(null=True)),
                (
                    "action",
                    models.PositiveSmallIntegerField(
                        choices=[(0, "create"), (1, "update"), (2, "delete"), (3, "access")], db_index=True,
                        verbose_name="action",
                    ),
                ),
                ("changes_text", models.TextField(blank=True, verbose_name="change message")),
                ("changes", models.JSONField(null=True, verbose_name="change message")),
                (
                    "cid",
                    models.CharField(blank=True, db_index=True, max_length=255, null=True, verbose_name="Correlation ID"),
                ),
                ("remote_addr", models.GenericIPAddressField(blank=True, null=True, verbose_name="remote address")),
                ("remote_port", models.PositiveIntegerField(blank=True, null=True, verbose_name="remote port")),
                (
                    "timestamp",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name="timestamp"),
                ),
                ("additional_data", models.JSONField(blank=True, null=True, verbose_name="additional data")),
                ("actor_email", models.CharField(blank=True, max_length=254, null=True, verbose_name="actor email")),
                ("actor_kind", models.CharField(blank=True, choices=ACTOR_KINDS, max_length=20)),
                ("actor_token_id", models.UUIDField(blank=True, null=True)),
                ("actor_label", models.CharField(blank=True, max_length=254)),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+", to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "content_type",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="contenttypes.contenttype",
                        verbose_name="content type",
                    ),
                ),
                (
                    "org",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tenants.org"),
                ),
            ],
            options={
                "verbose_name": "log entry",
                "verbose_name_plural": "log entries",
                "ordering": ["-timestamp"],
                "get_latest_by": "timestamp",
                "abstract": False,
                "indexes": [models.Index(fields=["org", "timestamp"], name="audit_change_time")],
            },
        ),
        EnableRowLevelSecurity("auditverification"),
        EnableRowLevelSecurity("changelogentry"),
    ]
