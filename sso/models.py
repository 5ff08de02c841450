from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import Role
from tenants.scoping import OrgOwnedModel


class SsoConnection(OrgOwnedModel):
    """An org's OpenID Connect identity provider. The client secret is encrypted at rest (keys.crypto),
    bound to this row; it is never returned by any API."""

    issuer = models.URLField(max_length=500)
    client_id = models.CharField(max_length=255)
    client_secret_ciphertext = models.TextField()
    # What the authorization request asks for; add e.g. "groups" when the IdP releases groups only on request.
    scopes = models.CharField(max_length=500, default="openid email profile")
    encryption_key_id = models.CharField(max_length=32)
    default_role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    groups_claim = models.CharField(max_length=100, blank=True, default="groups")
    # IdP group name -> role (admin, member or viewer); the highest matching role wins.
    group_roles = models.JSONField(default=dict, blank=True)
    # Members must sign in through the IdP; only `break_glass_user` (an owner) may still use a password.
    sso_only = models.BooleanField(default=False)
    break_glass_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org"], name="sso_connection_one_per_org")]

    def __str__(self):
        return self.issuer


class SsoDomain(OrgOwnedModel):
    """An email domain whose people the login page sends to this org's IdP. A domain belongs to one
    org: the unique constraint spans orgs, since discovery must be unambiguous."""

    domain = models.CharField(max_length=253, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.domain


class SsoIdentity(OrgOwnedModel):
    """Links the IdP's stable subject (`sub`) to a Gatehouse user, so a later login finds the same person."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "subject"], name="sso_identity_subject_unique_per_org")]
