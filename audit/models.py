from django.db import models
from django.utils import timezone

from tenants.scoping import OrgOwnedModel


class AuditEvent(OrgOwnedModel):
    """One state change or security event in an org, written by the service that made it."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_kind = models.CharField(max_length=20)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_token_id = models.UUIDField(null=True, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)

    class Meta:
        indexes = [models.Index(fields=["org", "created_at"]), models.Index(fields=["org", "action"])]
