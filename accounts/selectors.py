from django.utils import timezone

from accounts.models import AdminToken
from config.errors import NotFound
from keys.secrets import secret_hash, secret_matches
from tenants.context import secret_hash_context
from tenants.selectors import uuid_or_not_found


def admin_token_get_by_secret_dangerously_unscoped(*, secret: str) -> AdminToken | None:
    """The token behind a presented secret, if it is live. Runs before any org is known:
    PostgreSQL only shows the row whose hash matches (policy `org_lookup`)."""
    hashed = secret_hash(secret)
    with secret_hash_context(hashed):
        token = AdminToken.dangerously_unscoped.select_related("user", "org").filter(secret_hash=hashed).first()
    if token is None or not secret_matches(secret, token.secret_hash):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= timezone.now()):
        return None
    return token


def admin_token_list(*, org, user=None):
    """All of the org's tokens, or only `user`'s."""
    tokens = AdminToken.objects.filter(org=org).select_related("user").order_by("-created_at")
    return tokens.filter(user=user) if user is not None else tokens


def admin_token_get(*, org, token_id, user=None) -> AdminToken:
    token = admin_token_list(org=org, user=user).filter(id=uuid_or_not_found(token_id, "Token")).first()
    if token is None:
        raise NotFound("Token not found.")
    return token


def invite_path_for(user) -> str | None:
    """Where a person who has no password yet sets one (valid for PASSWORD_RESET_TIMEOUT); None once they have one."""
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    if user.has_usable_password():
        return None
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("console:invite-accept", kwargs={"uidb64": uidb64, "token": default_token_generator.make_token(user)})
