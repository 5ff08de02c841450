"""Writes of provider credentials, deployments, model aliases and virtual keys.

Each service validates, changes, records its audit event in the same transaction and, because
the proxy caches everything here per process, bumps the gateway cache generation after commit.
Secrets (provider API keys, virtual key secrets) never reach an audit event, a log or an error.
"""
import datetime
import decimal
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import NotRequired, TypedDict, Unpack

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import DecimalValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import Conflict, Gone, NotFound, ValidationFailed
from keys import selectors
from keys.crypto import DecryptionFailed, current_key_id, secret_decrypt, secret_encrypt
from keys.models import (
    AliasRoute,
    Deployment,
    ModelAlias,
    ProviderCredential,
    ProviderKind,
    VirtualKey,
    VirtualKeySecret,
)
from keys.secrets import secret_generate, secret_hash
from keys.ssrf import base_url_validate
from proxy.cache import gateway_change_record
from tenants.models import DataRegion, LoggingLevel, Org, Team, slug_validator
from tenants.webhooks import org_webhook_notify

VIRTUAL_KEY_PREFIX = "sk-gh-"
VIRTUAL_KEY_SHOWN_PREFIX_LENGTH = 10
ALL_ALIASES = "*"
ALIAS_NAME_PATTERN = re.compile(r"^[A-Za-z0-9.\-_:/]{1,100}$")
ALIAS_MAX_ROUTES = 20
ROUTE_POSITION_MAX = 99
ROUTE_WEIGHT_MAX = 1000
TIMEOUT_SECONDS_MIN, TIMEOUT_SECONDS_MAX = 1, 600
ROTATION_GRACE_SECONDS_MAX = 30 * 24 * 3600
ROTATION_DAYS_MAX = 3650
METADATA_MAX_KEYS = 16
METADATA_MAX_BYTES = 2048
API_KEY_MAX_LENGTH = 4096
PRICE_FIELDS = ("price_input_per_mtok", "price_output_per_mtok", "price_embedding_per_mtok")
price_validator = DecimalValidator(max_digits=12, decimal_places=6)


def _jsonable(value):
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, models.Model):
        return str(value)
    return value


def field_changes(instance: models.Model, fields: dict) -> dict[str, tuple]:
    """The fields whose new value differs from the instance's, as (old, new)."""
    return {
        name: (getattr(instance, name), value) for name, value in fields.items() if getattr(instance, name) != value
    }


def _audit_changes(changes: dict[str, tuple]) -> dict[str, list]:
    return {name: [_jsonable(old), _jsonable(new)] for name, (old, new) in changes.items()}


def _name_change(instance: models.Model, name: str | None, *, validate: Callable[[str], None]) -> dict:
    """Validates and sets a new name; returns the audit change, or nothing when the name stays."""
    if name is None or name == instance.name:
        return {}
    validate(name)
    change = {"name": [instance.name, name]}
    instance.name = name
    return change


def _django_validate(validator, value, *, field: str) -> None:
    try:
        validator(value)
    except DjangoValidationError as exc:
        raise ValidationFailed(" ".join(exc.messages), field=field) from None


def _text_validate(value, *, field: str, max_length: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ValidationFailed(f"Use a non-empty text of at most {max_length} characters.", field=field)


def _save_unique_name(instance: models.Model, *, what: str, **save_options) -> None:
    """Saves, turning the per-org unique name constraint into a field error (also under a concurrent insert)."""
    try:
        with transaction.atomic():
            instance.save(**save_options)
    except IntegrityError:
        raise Conflict(f"{what} with this name already exists in the org.", field="name") from None


# Provider credentials -------------------------------------------------------------------

def _credential_associated_data(credential: ProviderCredential) -> bytes:
    return f"{credential.org_id}:{credential.id}".encode()


def _credential_seal(credential: ProviderCredential, api_key: str) -> None:
    _text_validate(api_key, field="api_key", max_length=API_KEY_MAX_LENGTH)
    credential.encryption_key_id, credential.ciphertext = secret_encrypt(
        api_key, associated_data=_credential_associated_data(credential)
    )


def credential_api_key(credential: ProviderCredential) -> str:
    """The plaintext API key, for the proxy's call upstream. Raises `keys.crypto.DecryptionFailed`."""
    return secret_decrypt(
        credential.ciphertext, key_id=credential.encryption_key_id,
        associated_data=_credential_associated_data(credential),
    )


def credential_api_key_matches(credential: ProviderCredential, api_key: str) -> bool:
    """False also when the stored key cannot be decrypted any more (its encryption key left the ring)."""
    try:
        return credential_api_key(credential) == api_key
    except DecryptionFailed:
        return False


def _credential_name_validate(name: str) -> None:
    _django_validate(slug_validator, name, field="name")


@transaction.atomic
def credential_create(*, org: Org, name: str, provider_kind: str, api_key: str, actor: Actor) -> ProviderCredential:
    _credential_name_validate(name)
    if provider_kind not in ProviderKind.values:
        raise ValidationFailed(f"Unknown provider kind {provider_kind!r}.", field="provider_kind")
    # The id is part of the associated data, so it must exist before encrypting.
    credential = ProviderCredential(id=uuid.uuid4(), org=org, name=name, provider_kind=provider_kind)
    _credential_seal(credential, api_key)
    _save_unique_name(credential, what="A credential", force_insert=True)
    gateway_change_record(
        org=org, actor=actor, action="credential.create", target=credential,
        changes={"name": [None, name], "provider_kind": [None, provider_kind]},
    )
    return credential


@transaction.atomic
def credential_update(
    *, org: Org, credential: ProviderCredential, actor: Actor, api_key: str | None = None, name: str | None = None
) -> ProviderCredential:
    """Renames and/or replaces the API key; an API key equal to the stored one is no change."""
    changes = _name_change(credential, name, validate=_credential_name_validate)
    if api_key is not None and not credential_api_key_matches(credential, api_key):
        _credential_seal(credential, api_key)
        changes["api_key"] = "replaced"
    if not changes:
        return credential
    credential.updated_at = timezone.now()
    _save_unique_name(credential, what="A credential")
    gateway_change_record(org=org, actor=actor, action="credential.update", target=credential, changes=changes)
    return credential


@transaction.atomic
def credential_delete(*, org: Org, credential: ProviderCredential, actor: Actor) -> None:
    users = sorted(credential.deployments.values_list("name", flat=True))
    if users:
        raise Conflict(f"The credential is used by deployments: {', '.join(users)}. Change or delete them first.")
    gateway_change_record(
        org=org, actor=actor, action="credential.delete", target=credential, changes={"name": [credential.name, None]}
    )
    credential.delete()


@transaction.atomic
def credentials_reencrypt(*, org: Org, actor: Actor) -> int:
    """Re-encrypts every credential not under the current key, so that an old key can leave the ring."""
    key_id = current_key_id()
    stale = selectors.credential_list(org=org).exclude(encryption_key_id=key_id).select_for_update()
    count = 0
    for credential in stale:
        previous_key_id = credential.encryption_key_id
        try:
            api_key = credential_api_key(credential)
        except DecryptionFailed as exc:
            raise DecryptionFailed(f"credential {credential.name!r}: {exc}") from exc
        _credential_seal(credential, api_key)
        credential.save(update_fields=["ciphertext", "encryption_key_id"])
        gateway_change_record(
            org=org, actor=actor, action="credential.reencrypt", target=credential,
            changes={"encryption_key_id": [previous_key_id, credential.encryption_key_id]},
        )
        count += 1
    return count


# Deployments -----------------------------------------------------------------------------

class DeploymentOptions(TypedDict, total=False):
    api_version: str
    credential: ProviderCredential | None
    region: str
    hipaa_eligible: bool
    price_input_per_mtok: decimal.Decimal | None
    price_output_per_mtok: decimal.Decimal | None
    price_embedding_per_mtok: decimal.Decimal | None
    timeout_seconds: float
    max_output_tokens: int | None


class DeploymentFields(DeploymentOptions, total=False):
    name: str
    provider_kind: str
    base_url: str
    upstream_model: str


def _deployment_fields_check(fields: dict) -> None:
    unknown = set(fields) - set(DeploymentFields.__annotations__)
    if unknown:
        raise ValidationFailed(f"Unknown deployment field: {', '.join(sorted(unknown))}.")


def _deployment_validate(*, org: Org, deployment: Deployment, changed: Iterable[str]) -> None:
    """Checks the deployment as it will be saved; the base URL only when it is new, since it costs a DNS lookup."""
    _django_validate(slug_validator, deployment.name, field="name")
    if deployment.provider_kind not in ProviderKind.values:
        raise ValidationFailed(f"Unknown provider kind {deployment.provider_kind!r}.", field="provider_kind")
    if "base_url" in changed:
        _text_validate(deployment.base_url, field="base_url", max_length=500)
        base_url_validate(deployment.base_url)
    _text_validate(deployment.upstream_model, field="upstream_model", max_length=200)
    if len(deployment.api_version) > 40:
        raise ValidationFailed("Use at most 40 characters.", field="api_version")
    if deployment.provider_kind == ProviderKind.AZURE_OPENAI and not deployment.api_version:
        raise ValidationFailed("Azure OpenAI deployments need an api_version (e.g. 2024-10-21).", field="api_version")
    credential = deployment.credential
    if credential is None and deployment.provider_kind != ProviderKind.OPENAI_COMPATIBLE:
        raise ValidationFailed("This provider kind needs a credential.", field="credential")
    if credential is not None and credential.org_id != org.id:
        raise ValidationFailed("The credential does not exist in this org.", field="credential")
    if credential is not None and credential.provider_kind != deployment.provider_kind:
        raise ValidationFailed(
            f"The credential is for {credential.provider_kind}, the deployment for {deployment.provider_kind}.",
            field="credential",
        )
    if deployment.region not in DataRegion.values:
        raise ValidationFailed(f"Unknown region {deployment.region!r}.", field="region")
    for field in PRICE_FIELDS:
        price = getattr(deployment, field)
        if price is not None:
            if price < 0:
                raise ValidationFailed("A price cannot be negative.", field=field)
            _django_validate(price_validator, price, field=field)
    if not TIMEOUT_SECONDS_MIN <= deployment.timeout_seconds <= TIMEOUT_SECONDS_MAX:
        raise ValidationFailed(
            f"Use a timeout from {TIMEOUT_SECONDS_MIN} to {TIMEOUT_SECONDS_MAX} seconds.", field="timeout_seconds"
        )
    if deployment.max_output_tokens is not None and deployment.max_output_tokens < 1:
        raise ValidationFailed("Use at least 1, or no limit.", field="max_output_tokens")


@transaction.atomic
def deployment_create(
    *, org: Org, actor: Actor, name: str, provider_kind: str, base_url: str, upstream_model: str,
    **options: Unpack[DeploymentOptions],
) -> Deployment:
    fields = {
        "name": name, "provider_kind": provider_kind, "base_url": base_url, "upstream_model": upstream_model, **options
    }
    _deployment_fields_check(fields)
    deployment = Deployment(org=org, **fields)
    _deployment_validate(org=org, deployment=deployment, changed=fields)
    _save_unique_name(deployment, what="A deployment", force_insert=True)
    gateway_change_record(
        org=org, actor=actor, action="deployment.create", target=deployment,
        changes=_audit_changes({name: (None, value) for name, value in fields.items()}),
    )
    return deployment


@transaction.atomic
def deployment_update(
    *, org: Org, deployment: Deployment, actor: Actor, **fields: Unpack[DeploymentFields]
) -> Deployment:
    _deployment_fields_check(fields)
    changes = field_changes(deployment, fields)
    if not changes:
        return deployment
    for name in changes:
        setattr(deployment, name, fields[name])
    _deployment_validate(org=org, deployment=deployment, changed=changes)
    deployment.updated_at = timezone.now()
    _save_unique_name(deployment, what="A deployment")
    gateway_change_record(
        org=org, actor=actor, action="deployment.update", target=deployment, changes=_audit_changes(changes)
    )
    return deployment


@transaction.atomic
def deployment_delete(*, org: Org, deployment: Deployment, actor: Actor) -> None:
    aliases = sorted(set(deployment.routes.values_list("alias__name", flat=True)))
    if aliases:
        raise Conflict(f"The deployment is routed to by aliases: {', '.join(aliases)}. Change or delete them first.")
    gateway_change_record(
        org=org, actor=actor, action="deployment.delete", target=deployment, changes={"name": [deployment.name, None]}
    )
    deployment.delete()


# Model aliases ---------------------------------------------------------------------------

class AliasRouteSpec(TypedDict):
    deployment: str  # name or id
    position: NotRequired[int]
    weight: NotRequired[int]


def _routes_as_data(routes: Iterable[tuple[Deployment, int, int]]) -> list[dict]:
    ordered = sorted(routes, key=lambda route: (route[1], route[0].name))
    return [
        {"deployment": deployment.name, "position": position, "weight": weight}
        for deployment, position, weight in ordered
    ]


def alias_routes_describe(alias: ModelAlias) -> list[dict]:
    """The alias's routes in the order the proxy tries them, as plain data (audit events, apply_config)."""
    routes = alias.routes.select_related("deployment")
    return _routes_as_data((route.deployment, route.position, route.weight) for route in routes)


def _alias_name_validate(name) -> None:
    if not isinstance(name, str) or not ALIAS_NAME_PATTERN.match(name):
        raise ValidationFailed(
            "Use 1 to 100 letters, digits and the characters . - _ : / (e.g. gpt-4o or anthropic/claude-sonnet).",
            field="name",
        )


def _int_in_range(value, *, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(f"Use a whole number from {low} to {high}.", field=field)
    return value


def _alias_routes_resolve(*, org: Org, routes: list[AliasRouteSpec]) -> list[tuple[Deployment, int, int]]:
    if not routes:
        raise ValidationFailed("An alias needs at least one route.", field="routes")
    if len(routes) > ALIAS_MAX_ROUTES:
        raise ValidationFailed(f"Use at most {ALIAS_MAX_ROUTES} routes.", field="routes")
    resolved, seen = [], set()
    for index, route in enumerate(routes):
        field = f"routes[{index}]"
        try:
            deployment = selectors.deployment_get_by_ref(org=org, ref=route["deployment"])
        except NotFound as exc:
            raise ValidationFailed(exc.message, field=f"{field}.deployment") from None
        if deployment.id in seen:
            raise ValidationFailed("A deployment may appear once per alias.", field=f"{field}.deployment")
        seen.add(deployment.id)
        position = _int_in_range(route.get("position", 0), field=f"{field}.position", low=0, high=ROUTE_POSITION_MAX)
        weight = _int_in_range(route.get("weight", 1), field=f"{field}.weight", low=1, high=ROUTE_WEIGHT_MAX)
        resolved.append((deployment, position, weight))
    return resolved


def alias_routes_normalize(*, org: Org, routes: list[AliasRouteSpec]) -> list[dict]:
    """Validates a route list and describes it like `alias_routes_describe`, to compare before changing."""
    return _routes_as_data(_alias_routes_resolve(org=org, routes=routes))


def _alias_routes_replace(*, org: Org, alias: ModelAlias, routes: list[tuple[Deployment, int, int]]) -> None:
    alias.routes.all().delete()
    AliasRoute.objects.bulk_create(
        AliasRoute(org=org, alias=alias, deployment=deployment, position=position, weight=weight)
        for deployment, position, weight in routes
    )


@transaction.atomic
def alias_create(*, org: Org, name: str, routes: list[AliasRouteSpec], actor: Actor) -> ModelAlias:
    _alias_name_validate(name)
    resolved = _alias_routes_resolve(org=org, routes=routes)
    alias = ModelAlias(org=org, name=name)
    _save_unique_name(alias, what="An alias", force_insert=True)
    _alias_routes_replace(org=org, alias=alias, routes=resolved)
    gateway_change_record(
        org=org, actor=actor, action="alias.create", target=alias,
        changes={"name": [None, name], "routes": [None, _routes_as_data(resolved)]},
    )
    return alias


@transaction.atomic
def alias_update(
    *, org: Org, alias: ModelAlias, actor: Actor, name: str | None = None, routes: list[AliasRouteSpec] | None = None
) -> ModelAlias:
    """`routes`, when given, replaces the whole route list."""
    changes = _name_change(alias, name, validate=_alias_name_validate)
    if changes:
        _save_unique_name(alias, what="An alias")
    if routes is not None:
        resolved = _alias_routes_resolve(org=org, routes=routes)
        previous = alias_routes_describe(alias)
        if _routes_as_data(resolved) != previous:
            _alias_routes_replace(org=org, alias=alias, routes=resolved)
            changes["routes"] = [previous, _routes_as_data(resolved)]
    if changes:
        gateway_change_record(org=org, actor=actor, action="alias.update", target=alias, changes=changes)
    return alias


@transaction.atomic
def alias_delete(*, org: Org, alias: ModelAlias, actor: Actor) -> None:
    gateway_change_record(org=org, actor=actor, action="alias.delete", target=alias, changes={"name": [alias.name, None]})
    alias.delete()


# Virtual keys ----------------------------------------------------------------------------

def _allowed_aliases_validate(*, org: Org, allowed_aliases) -> list[str]:
    field = "allowed_aliases"
    if not isinstance(allowed_aliases, list) or not allowed_aliases:
        raise ValidationFailed(f"List at least one alias, or {ALL_ALIASES!r} for every alias of the org.", field=field)
    if any(not isinstance(alias, str) for alias in allowed_aliases):
        raise ValidationFailed("Alias names are strings.", field=field)
    if ALL_ALIASES in allowed_aliases:
        if len(allowed_aliases) > 1:
            raise ValidationFailed(f"{ALL_ALIASES!r} already allows every alias; list nothing else.", field=field)
        return [ALL_ALIASES]
    unknown = sorted(set(allowed_aliases) - selectors.alias_names(org=org))
    if unknown:
        raise ValidationFailed(f"Unknown aliases in this org: {', '.join(unknown)}.", field=field)
    return sorted(set(allowed_aliases))


def _metadata_validate(metadata) -> None:
    if not isinstance(metadata, dict):
        raise ValidationFailed("Metadata is a JSON object.", field="metadata")
    if len(metadata) > METADATA_MAX_KEYS or any(not isinstance(key, str) for key in metadata):
        raise ValidationFailed(f"Use at most {METADATA_MAX_KEYS} keys, each a string.", field="metadata")
    if len(json.dumps(metadata).encode()) > METADATA_MAX_BYTES:
        raise ValidationFailed(f"Metadata is limited to {METADATA_MAX_BYTES} bytes of JSON.", field="metadata")


def _sealed_secret_associated_data(secret_row: VirtualKeySecret) -> bytes:
    return f"{secret_row.org_id}:{secret_row.id}".encode()


def _virtual_key_secret_issue(*, org: Org, key: VirtualKey, seal: bool = False) -> str:
    """Saves the key with a new secret. Only the secret's keyed hash is stored; the key shows the
    secret's first and last characters so that people can tell their keys apart. `seal` also keeps the
    secret encrypted until an admin reveals it once (a scheduled rotation has nobody to show it to)."""
    secret = secret_generate(VIRTUAL_KEY_PREFIX)
    key.prefix, key.last_four = secret[:VIRTUAL_KEY_SHOWN_PREFIX_LENGTH], secret[-4:]
    key.save()
    secret_row = VirtualKeySecret(id=uuid.uuid4(), org=org, key=key, secret_hash=secret_hash(secret), last_four=key.last_four)
    if seal:
        secret_row.sealed_key_id, secret_row.sealed_secret = secret_encrypt(
            secret, associated_data=_sealed_secret_associated_data(secret_row)
        )
    secret_row.save(force_insert=True)
    return secret


def _rotation_days_validate(rotation_days) -> int | None:
    if rotation_days is None:
        return None
    return _int_in_range(rotation_days, field="rotation_days", low=1, high=ROTATION_DAYS_MAX)


def _next_rotation_at(rotation_days: int | None, *, after: datetime.datetime) -> datetime.datetime | None:
    return after + datetime.timedelta(days=rotation_days) if rotation_days else None


@transaction.atomic
def virtual_key_create(
    *, org: Org, team: Team, name: str, allowed_aliases: list[str], expires_at: datetime.datetime | None,
    metadata: dict, actor: Actor, created_by: User | None = None, logging_level: str | None = None,
    rotation_days: int | None = None,
) -> tuple[VirtualKey, str]:
    """Returns the key and its secret; only a keyed hash of the secret is stored, so it cannot be shown again.
    `logging_level` can only lower the org's and team's request-logging level, never raise it."""
    if team.org_id != org.id:
        raise ValidationFailed("The team does not exist in this org.", field="team_id")
    _text_validate(name, field="name", max_length=100)
    allowed_aliases = _allowed_aliases_validate(org=org, allowed_aliases=allowed_aliases)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("The expiry must be in the future.", field="expires_at")
    _metadata_validate(metadata)
    if logging_level is not None and logging_level not in LoggingLevel.values:
        raise ValidationFailed(f"Unknown logging level {logging_level!r}.", field="logging_level")
    rotation_days = _rotation_days_validate(rotation_days)
    key = VirtualKey(
        org=org, team=team, name=name, allowed_aliases=allowed_aliases, metadata=metadata,
        created_by=created_by, expires_at=expires_at, logging_level=logging_level, rotation_days=rotation_days,
        next_rotation_at=_next_rotation_at(rotation_days, after=timezone.now()),
    )
    secret = _virtual_key_secret_issue(org=org, key=key)
    gateway_change_record(
        org=org, actor=actor, action="virtual_key.create", target=key,
        changes={
            "name": [None, name], "team": [None, team.slug], "allowed_aliases": [None, allowed_aliases],
            "expires_at": [None, _jsonable(expires_at)], "metadata": [None, metadata],
            "logging_level": [None, logging_level], "rotation_days": [None, rotation_days],
        },
    )
    return key, secret


@transaction.atomic
def virtual_key_revoke(*, org: Org, key: VirtualKey, actor: Actor) -> VirtualKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        gateway_change_record(org=org, actor=actor, action="virtual_key.revoke", target=key)
    return key


def _virtual_key_rotate(
    *, org: Org, key: VirtualKey, grace_seconds: int, seal: bool = False
) -> tuple[VirtualKey, str, datetime.datetime]:
    """Adds a new secret and ends every older one after the grace period; restarts the rotation schedule.
    Returns the locked, current key, the new secret and the older secrets' end."""
    grace_seconds = _int_in_range(grace_seconds, field="grace_seconds", low=0, high=ROTATION_GRACE_SECONDS_MAX)
    # Locked so that two concurrent rotations cannot each leave an old secret without an end.
    key = VirtualKey.objects.select_for_update().get(org=org, id=key.id)
    now = timezone.now()
    if key.revoked_at is not None:
        raise Conflict("A revoked key cannot be rotated; create a new key.")
    if key.expires_at is not None and key.expires_at <= now:
        raise Conflict("An expired key cannot be rotated; create a new key.")
    valid_until = now + datetime.timedelta(seconds=grace_seconds)
    older = VirtualKeySecret.objects.filter(org=org, key=key)
    # A secret already ending sooner (an earlier rotation's) keeps its earlier end.
    older.filter(Q(valid_until__isnull=True) | Q(valid_until__gt=valid_until)).update(valid_until=valid_until)
    # An unrevealed successor of an earlier scheduled rotation is superseded: nobody needs it any more.
    older.exclude(sealed_secret="").update(sealed_secret="", sealed_key_id="")
    key.next_rotation_at = _next_rotation_at(key.rotation_days, after=now)
    secret = _virtual_key_secret_issue(org=org, key=key, seal=seal)
    return key, secret, valid_until


@transaction.atomic
def virtual_key_rotate(*, org: Org, key: VirtualKey, grace_seconds: int, actor: Actor) -> tuple[VirtualKey, str]:
    """Adds a new secret; every older secret still valid stops working after the grace period (0: at once)."""
    key, secret, valid_until = _virtual_key_rotate(org=org, key=key, grace_seconds=grace_seconds)
    gateway_change_record(
        org=org, actor=actor, action="virtual_key.rotate", target=key,
        changes={
            "grace_seconds": [None, grace_seconds], "previous_secrets_valid_until": [None, _jsonable(valid_until)]
        },
    )
    return key, secret


@transaction.atomic
def virtual_key_rotation_schedule(*, org: Org, key: VirtualKey, rotation_days: int | None, actor: Actor) -> VirtualKey:
    """Rotates the key every `rotation_days` from now on (None: no schedule)."""
    rotation_days = _rotation_days_validate(rotation_days)
    key = VirtualKey.objects.select_for_update().get(org=org, id=key.id)
    if rotation_days == key.rotation_days:
        return key
    if rotation_days is not None and key.revoked_at is not None:
        raise Conflict("A revoked key cannot be rotated; create a new key.")
    changes = {"rotation_days": [key.rotation_days, rotation_days]}
    key.rotation_days = rotation_days
    key.next_rotation_at = _next_rotation_at(rotation_days, after=timezone.now())
    key.save(update_fields=["rotation_days", "next_rotation_at"])
    gateway_change_record(org=org, actor=actor, action="virtual_key.update", target=key, changes=changes)
    return key


@transaction.atomic
def virtual_key_rotate_scheduled(*, org: Org, key: VirtualKey, grace_seconds: int, actor: Actor) -> bool:
    """A due scheduled rotation: the new secret is sealed until an admin reveals it
    (`virtual_key_successor_reveal`); the org hears of it by audit event and webhook, never with the secret."""
    locked = VirtualKey.objects.select_for_update().get(org=org, id=key.id)
    now = timezone.now()
    if locked.next_rotation_at is None or locked.next_rotation_at > now:
        return False  # rotated by someone else meanwhile
    if locked.revoked_at is not None or (locked.expires_at is not None and locked.expires_at <= now):
        locked.next_rotation_at = None
        locked.save(update_fields=["next_rotation_at"])
        return False
    key, _, valid_until = _virtual_key_rotate(org=org, key=locked, grace_seconds=grace_seconds, seal=True)
    gateway_change_record(
        org=org, actor=actor, action="virtual_key.rotate.scheduled", target=key,
        changes={
            "grace_seconds": [None, grace_seconds], "previous_secrets_valid_until": [None, _jsonable(valid_until)],
            "next_rotation_at": [None, _jsonable(key.next_rotation_at)],
        },
    )
    org_webhook_notify(org_id=org.id, event="virtual_key.rotated", payload={
        "key_id": str(key.id), "name": key.name, "last_four": key.last_four,
        "previous_secrets_valid_until": _jsonable(valid_until), "next_rotation_at": _jsonable(key.next_rotation_at),
    })
    return True


def virtual_keys_rotate_due(*, org: Org, actor: Actor, grace_seconds: int, now: datetime.datetime | None = None) -> int:
    """Rotates every key of the org whose scheduled rotation is due, each in its own transaction.
    Call it inside `org_context`."""
    due = VirtualKey.objects.filter(org=org, next_rotation_at__lte=now or timezone.now()).order_by("next_rotation_at")
    return sum(
        virtual_key_rotate_scheduled(org=org, key=key, grace_seconds=grace_seconds, actor=actor) for key in list(due)
    )


@transaction.atomic
def virtual_key_successor_reveal(*, org: Org, key: VirtualKey, actor: Actor) -> str:
    """The secret a scheduled rotation made, once: it is wiped as it is shown."""
    newest = VirtualKeySecret.objects.select_for_update().filter(org=org, key=key).order_by("-created_at").first()
    if newest is None or not newest.sealed_secret:
        raise Gone("No unrevealed secret: it was already revealed, or no scheduled rotation made one since.")
    try:
        secret = secret_decrypt(newest.sealed_secret, key_id=newest.sealed_key_id,
                                associated_data=_sealed_secret_associated_data(newest))
    except DecryptionFailed:
        raise Conflict("The new secret cannot be decrypted (its encryption key left the ring); rotate the key.") from None
    newest.sealed_secret, newest.sealed_key_id = "", ""
    newest.save(update_fields=["sealed_secret", "sealed_key_id"])
    audit_event_record(org_id=org.id, actor=actor, action="virtual_key.successor_reveal", target=key,
                       changes={"last_four": [None, newest.last_four]})
    return secret


@transaction.atomic
def virtual_key_sealed_secrets_reencrypt(*, org: Org, actor: Actor) -> int:
    """Re-encrypts unrevealed successor secrets not under the current key, like `credentials_reencrypt`."""
    stale = VirtualKeySecret.objects.filter(org=org).exclude(sealed_secret="").exclude(
        sealed_key_id=current_key_id()
    ).select_for_update()
    count = 0
    for secret_row in stale:
        previous_key_id = secret_row.sealed_key_id
        secret = secret_decrypt(secret_row.sealed_secret, key_id=previous_key_id,
                                associated_data=_sealed_secret_associated_data(secret_row))
        secret_row.sealed_key_id, secret_row.sealed_secret = secret_encrypt(
            secret, associated_data=_sealed_secret_associated_data(secret_row)
        )
        secret_row.save(update_fields=["sealed_secret", "sealed_key_id"])
        audit_event_record(org_id=org.id, actor=actor, action="virtual_key.reencrypt", target=secret_row.key,
                           changes={"encryption_key_id": [previous_key_id, secret_row.sealed_key_id]})
        count += 1
    return count
