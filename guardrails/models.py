from django.db import models
from django.utils import timezone

from keys.models import VirtualKey
from tenants.models import Team, slug_validator
from tenants.scoping import OrgOwnedModel


class GuardrailAction(models.TextChoices):
    """In order of strictness: when org, team and key policies disagree, the stricter action wins."""

    ALLOW = "allow", "Allow"
    FLAG = "flag", "Flag (record only)"
    REDACT = "redact", "Redact"
    BLOCK = "block", "Block"


class GuardrailPolicy(OrgOwnedModel):
    """The org's policy (no team, no key), or a team's or a key's override of it.

    `actions` maps a category (a detection category or `custom:<name>`) to a GuardrailAction.
    Categories the org policy leaves out get the documented defaults; an override can only
    make an action stricter. The medical-record and health-plan patterns are org-wide.
    """

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey(VirtualKey, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actions = models.JSONField(default=dict, blank=True)
    medical_record_patterns = models.JSONField(default=list, blank=True)
    health_plan_patterns = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(team__isnull=True) | models.Q(key__isnull=True), name="guardrailpolicy_one_scope",
            ),
            models.UniqueConstraint(
                fields=["org"], condition=models.Q(team__isnull=True, key__isnull=True),
                name="guardrailpolicy_one_per_org",
            ),
            models.UniqueConstraint(
                fields=["org", "team"], condition=models.Q(team__isnull=False), name="guardrailpolicy_one_per_team",
            ),
            models.UniqueConstraint(
                fields=["org", "key"], condition=models.Q(key__isnull=False), name="guardrailpolicy_one_per_key",
            ),
        ]


class CustomDetector(OrgOwnedModel):
    """An org's own detector: a regular expression whose matches are the category `custom:<name>`."""

    name = models.CharField(max_length=50, validators=[slug_validator])
    pattern = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="customdetector_name_unique_per_org")]

    def __str__(self):
        return self.name
