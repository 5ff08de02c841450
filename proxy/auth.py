"""Virtual-key authentication for /v1/, without a database query on the hot path.

A presented secret is hashed (HMAC with the server pepper) and looked up in a
per-process cache tagged with the gateway cache generation (proxy.cache); only a miss,
or a generation bumped by a change anywhere, reads PostgreSQL, in one short transaction.
"""
import dataclasses
import datetime
import uuid

from django.utils import timezone

from keys.models import VirtualKey, VirtualKeySecret
from keys.secrets import secret_hash
from proxy.cache import GenerationCache
from proxy.errors import ProxyError
from tenants.context import org_context, secret_hash_context

MAX_CACHED_SECRETS = 50_000


@dataclasses.dataclass(frozen=True, slots=True)
class KeyGrant:
    key_id: uuid.UUID
    org_id: uuid.UUID
    team_id: uuid.UUID
    last_four: str
    allowed_aliases: frozenset[str]
    expires_at: datetime.datetime | None
    revoked_at: datetime.datetime | None
    secret_valid_until: datetime.datetime | None
    team_logging_level: str | None
    key_logging_level: str | None
    handles_phi: bool  # the team or the key is marked as handling PHI
    team_approved_aliases: frozenset[str] | None  # the team's catalogue; None: no team restriction

    def team_allows_alias(self, alias: str) -> bool:
        return self.team_approved_aliases is None or alias in self.team_approved_aliases

    def allows_alias(self, alias: str) -> bool:
        return ("*" in self.allowed_aliases or alias in self.allowed_aliases) and self.team_allows_alias(alias)


_grants = GenerationCache(max_entries=MAX_CACHED_SECRETS)


def _grant_load(hashed: str) -> KeyGrant | None:
    with secret_hash_context(hashed):
        secret = VirtualKeySecret.dangerously_unscoped.filter(secret_hash=hashed).values(
            "key_id", "org_id", "valid_until"
        ).first()
        if secret is None:
            return None
        with org_context(secret["org_id"]):
            key = VirtualKey.objects.select_related("team").get(id=secret["key_id"])
    return KeyGrant(
        key_id=key.id, org_id=key.org_id, team_id=key.team_id, last_four=key.last_four,
        allowed_aliases=frozenset(key.allowed_aliases), expires_at=key.expires_at, revoked_at=key.revoked_at,
        secret_valid_until=secret["valid_until"], team_logging_level=key.team.logging_level,
        key_logging_level=key.logging_level, handles_phi=key.handles_phi or key.team.handles_phi,
        team_approved_aliases=None if key.team.approved_aliases is None else frozenset(key.team.approved_aliases),
    )


def hashed_secret_from_request(request) -> str:
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    if authorization[:7].lower() == "bearer ":
        secret = authorization[7:].strip()
    else:
        secret = request.META.get("HTTP_X_API_KEY", "").strip()
    if not secret:
        raise ProxyError(401, "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key'.", code="missing_api_key")
    return secret_hash(secret)


def key_grant_guess(hashed: str) -> KeyGrant | None:
    return _grants.peek(hashed)


def key_grant_for_hash(hashed: str, *, generation: int) -> KeyGrant:
    grant = _grants.get(hashed, generation, _grant_load)
    if grant is None:
        raise ProxyError(401, "Invalid API key.", code="invalid_api_key")
    now = timezone.now()
    if grant.revoked_at is not None:
        raise ProxyError(401, "This API key has been revoked.", code="revoked_api_key")
    if grant.expires_at is not None and grant.expires_at <= now:
        raise ProxyError(401, "This API key has expired.", code="expired_api_key")
    if grant.secret_valid_until is not None and grant.secret_valid_until <= now:
        raise ProxyError(401, "This API key was rotated and its grace period is over.", code="rotated_api_key")
    return grant
