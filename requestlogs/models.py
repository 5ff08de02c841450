from django.db import models
from django.utils import timezone

from tenants.models import LoggingLevel
from tenants.scoping import OrgOwnedModel


class RequestLog(OrgOwnedModel):
    """One row per proxied request that got past authentication. Never holds a secret;
    prompt and completion text only at the `redacted` or `full` logging level."""

    created_at = models.DateTimeField(default=timezone.now)
    request_id = models.CharField(max_length=128)
    team_id = models.UUIDField(null=True, blank=True)
    key_id = models.UUIDField(null=True, blank=True)
    key_last_four = models.CharField(max_length=4, blank=True)
    end_user = models.CharField(max_length=256, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    endpoint = models.CharField(max_length=16)
    alias = models.CharField(max_length=200, blank=True)
    deployment = models.CharField(max_length=50, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    provider_kind = models.CharField(max_length=20, blank=True)
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    stream = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=9, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    guardrail = models.JSONField(default=dict, blank=True, help_text="Categories and counts found, never values.")
    routing = models.JSONField(
        default=dict, blank=True, help_text="Why this deployment served: eligible, excluded (with reasons) and chosen.")
    logging_level = models.CharField(max_length=10, choices=LoggingLevel.choices, default=LoggingLevel.METADATA)
    request_text = models.TextField(null=True, blank=True)
    response_text = models.TextField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["org", "created_at"], name="requestlog_org_time"),
            # Retention deletes by age across orgs in bounded batches: an index, never a sequential scan.
            models.Index(fields=["created_at"], name="requestlog_time"),
            models.Index(
                fields=["created_at"], name="requestlog_text_time",
                condition=models.Q(request_text__isnull=False) | models.Q(response_text__isnull=False),
            ),
            # Data-subject requests find an end user's rows without scanning the org's.
            models.Index(fields=["org", "end_user"], name="requestlog_org_end_user", condition=~models.Q(end_user="")),
        ]


class RequestDailyUsage(OrgOwnedModel):
    """Per day, team, key, alias and deployment: outlives the raw rows' retention."""

    day = models.DateField()
    team_id = models.UUIDField(null=True, blank=True)
    key_id = models.UUIDField(null=True, blank=True)
    alias = models.CharField(max_length=200, blank=True)
    deployment = models.CharField(max_length=50, blank=True)
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=9, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "day", "team_id", "key_id", "alias", "deployment"],
                name="request_daily_usage_unique", nulls_distinct=False,
            )
        ]
