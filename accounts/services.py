import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import AdminToken
from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import PermissionDenied, ValidationFailed
from keys.secrets import secret_generate, secret_hash
from tenants.models import ROLE_RANK, Org, Role

ADMIN_TOKEN_PREFIX = "gha_"


@transaction.atomic
def admin_token_create(
    *, org: Org, user, name: str, role: Role, acting_role: Role, expires_at: datetime.datetime | None, actor: Actor
) -> tuple[AdminToken, str]:
    """Returns the token and its secret; the secret is not stored and cannot be shown again."""
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(acting_role)]:
        raise PermissionDenied("A token cannot carry a role above your own.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("The expiry must be in the future.", field="expires_at")
    secret = secret_generate(ADMIN_TOKEN_PREFIX)
    token = AdminToken.objects.create(
        org=org, user=user, name=name, role=role, secret_hash=secret_hash(secret),
        prefix=secret[: len(ADMIN_TOKEN_PREFIX) + 4], last_four=secret[-4:], expires_at=expires_at,
    )
    audit_event_record(
        org_id=org.id, actor=actor, action="admin_token.create", target=token,
        changes={"name": [None, name], "role": [None, role], "user": [None, user.email]},
    )
    return token, secret


@transaction.atomic
def admin_token_revoke(*, org: Org, token: AdminToken, actor: Actor, reason: str = "revoked") -> AdminToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_event_record(
            org_id=org.id, actor=actor, action="admin_token.revoke", target=token, changes={"reason": [None, reason]}
        )
    return token


@transaction.atomic
def admin_tokens_expire(*, org: Org, actor: Actor) -> int:
    """Marks tokens past their expiry as revoked, so lists and audits show why they stopped working."""
    expired = AdminToken.objects.filter(org=org, revoked_at__isnull=True, expires_at__lte=timezone.now())
    count = 0
    for token in expired.select_for_update():
        admin_token_revoke(org=org, token=token, actor=actor, reason="expired")
        count += 1
    return count


def admin_token_effective_role(*, token: AdminToken, membership_role: Role) -> Role:
    """A token never grants more than its owner has now, even if the owner was demoted since."""
    return min(Role(token.role), Role(membership_role), key=lambda role: ROLE_RANK[role])
