import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from guardian.managers import UserObjectPermissionManager
from guardian.models import UserObjectPermissionBase

from tenants.scoping import OrgOwnedModel, OrgScopedManager

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1 to 50 lower-case letters, digits and hyphens, starting and ending with a letter or digit.",
)


def time_zone_validator(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not an IANA time zone (for example Europe/Berlin or UTC).")


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]

    def at_least(self, other: "Role") -> bool:
        return ROLE_RANK[self] >= ROLE_RANK[Role(other)]


ROLE_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3, Role.OWNER: 4}


class DataRegion(models.TextChoices):
    US = "us", "United States"
    EU = "eu", "European Union"


class LoggingLevel(models.TextChoices):
    METADATA = "metadata", "Metadata only"
    REDACTED = "redacted", "Redacted text"
    FULL = "full", "Full text"


class Org(models.Model):
    """The tenant itself. Not tenant-owned, so it carries no row-level policy; the
    API reaches an org only through the caller's membership."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    data_region = models.CharField(max_length=2, choices=DataRegion.choices, default=DataRegion.US)
    logging_level = models.CharField(max_length=10, choices=LoggingLevel.choices, default=LoggingLevel.METADATA)
    # Request-log metadata is kept `retention_days`; prompt and completion text only `text_retention_days`.
    retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    text_retention_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    # Every member needs a second factor (owners and admins always do); see docs/identity.md.
    mfa_required = models.BooleanField(default=False)
    # Budget periods (daily, weekly, monthly) start at midnight in this IANA time zone.
    time_zone = models.CharField(max_length=64, default="UTC", validators=[time_zone_validator])
    # Without a price a request's cost, and so every budget, cannot be computed: refused unless allowed here.
    allow_unpriced_models = models.BooleanField(default=False)
    # Alerts (soft budget limits, key rotations, overdue data-subject requests) are POSTed here, signed.
    webhook_url = models.URLField(max_length=500, blank=True)
    # Provider credentials and SSO client secrets older than this are reported for rotation.
    secret_rotation_days = models.PositiveIntegerField(default=90, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.slug


class Team(OrgOwnedModel):
    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=100)
    # May only lower the org's request-logging level (None: the org's).
    logging_level = models.CharField(max_length=10, choices=LoggingLevel.choices, null=True, blank=True)
    # Every request from this team's keys is treated as PHI (HIPAA-eligible deployments only).
    handles_phi = models.BooleanField(default=False)
    # The team's approved-model catalogue: aliases its keys may use on top of each key's own list; null = no restriction.
    approved_aliases = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="team_slug_unique_per_org")]
        permissions = [("manage_team", "Can manage the team and its members")]

    def __str__(self):
        return self.slug


class Membership(OrgOwnedModel):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="membership_unique_per_org")]

    def __str__(self):
        return f"{self.user_id}@{self.org_id}:{self.role}"


class TeamMembership(OrgOwnedModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="team_memberships")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="team_memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "team", "membership"], name="team_membership_unique")
        ]


class TeamPermissionManager(OrgScopedManager, UserObjectPermissionManager):
    """Scoped like every tenant manager, with the `assign_perm` / `remove_perm` that django-guardian calls."""


class TeamPermission(OrgOwnedModel, UserObjectPermissionBase):
    """A per-team grant (django-guardian's direct foreign-key form), e.g. team admin."""

    content_object = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="permission_grants")

    objects = TeamPermissionManager()

    class Meta(UserObjectPermissionBase.Meta):
        pass

    def save(self, *args, **kwargs):
        self.org_id = self.content_object.org_id
        super().save(*args, **kwargs)
