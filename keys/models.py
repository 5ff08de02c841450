from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from tenants.models import DataRegion, LoggingLevel, Team, slug_validator
from tenants.scoping import OrgOwnedModel


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama, TGI, ...)"


class ProviderCredential(OrgOwnedModel):
    """An upstream API key, encrypted at rest (AES-256-GCM, see keys.crypto); write-only through every API."""

    name = models.CharField(max_length=50, validators=[slug_validator])
    provider_kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    ciphertext = models.TextField()
    encryption_key_id = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="credential_name_unique_per_org")]

    def __str__(self):
        return self.name


class Deployment(OrgOwnedModel):
    """One upstream model at one provider endpoint, with its price and limits."""

    name = models.CharField(max_length=50, validators=[slug_validator])
    provider_kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=500)
    upstream_model = models.CharField(max_length=200)
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure OpenAI api-version")
    credential = models.ForeignKey(ProviderCredential, null=True, blank=True, on_delete=models.PROTECT, related_name="deployments")
    region = models.CharField(max_length=2, choices=DataRegion.choices, default=DataRegion.US)
    hipaa_eligible = models.BooleanField(default=False)
    price_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    price_output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    price_embedding_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    timeout_seconds = models.FloatField(default=60.0)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="deployment_name_unique_per_org")]

    def __str__(self):
        return self.name


class ModelAlias(OrgOwnedModel):
    """The model name clients send; routes to an ordered fallback chain of deployments."""

    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="alias_name_unique_per_org")]

    def __str__(self):
        return self.name


class AliasRoute(OrgOwnedModel):
    """Deployments at the same `position` share load by `weight`; higher positions are fallbacks."""

    alias = models.ForeignKey(ModelAlias, on_delete=models.CASCADE, related_name="routes")
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="routes")
    position = models.PositiveSmallIntegerField(default=0)
    weight = models.PositiveSmallIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "alias", "deployment"], name="alias_route_unique")]
        ordering = ["position", "id"]


class VirtualKey(OrgOwnedModel):
    """What an application presents on /v1/; belongs to one org and one team."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="virtual_keys")
    name = models.CharField(max_length=100)
    allowed_aliases = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # May only lower the team's and org's request-logging level (None: inherit).
    logging_level = models.CharField(max_length=10, choices=LoggingLevel.choices, null=True, blank=True)
    # Every request with this key is treated as PHI (HIPAA-eligible deployments only).
    handles_phi = models.BooleanField(default=False)
    # Scheduled rotation: a successor secret every `rotation_days`, the old one kept for the grace period.
    rotation_days = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    next_rotation_at = models.DateTimeField(null=True, blank=True)
    prefix = models.CharField(max_length=16)
    last_four = models.CharField(max_length=4)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["org", "team"])]

    def __str__(self):
        return f"{self.prefix}…{self.last_four}"


class VirtualKeySecret(OrgOwnedModel):
    """A secret of a key, stored as a keyed hash. Rotation adds a new one and gives the old a `valid_until`."""

    key = models.ForeignKey(VirtualKey, on_delete=models.CASCADE, related_name="secrets")
    secret_hash = models.CharField(max_length=64, unique=True)
    last_four = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    # A scheduled rotation's new secret, encrypted (keys.crypto) until an admin reveals it once; then blank.
    sealed_secret = models.TextField(blank=True)
    sealed_key_id = models.CharField(max_length=32, blank=True)
