"""Reads of provider credentials, deployments, model aliases and virtual keys, always through the
org-scoped default managers: another org's row is simply not found."""
import contextlib
import datetime
import uuid

from django.db.models import QuerySet
from django.utils import timezone

from config.errors import NotFound
from keys.models import Deployment, ModelAlias, ProviderCredential, VirtualKey
from sso.models import SsoConnection
from tenants.models import Org
from tenants.selectors import object_by_id_or_not_found


def _get_by_ref(queryset: QuerySet, ref: str, what: str):
    """`ref` is an id or a name (an id wins: a name may look like an id)."""
    found = None
    with contextlib.suppress(ValueError):
        found = queryset.filter(id=uuid.UUID(str(ref))).first()
    found = found or queryset.filter(name=ref).first()
    if found is None:
        raise NotFound(f"{what} {ref!r} not found in this org.")
    return found


def credential_list(*, org: Org) -> QuerySet[ProviderCredential]:
    return ProviderCredential.objects.filter(org=org).order_by("name")


def credential_get(*, org: Org, credential_id) -> ProviderCredential:
    return object_by_id_or_not_found(credential_list(org=org), credential_id, "Credential")


def credential_get_by_ref(*, org: Org, ref: str) -> ProviderCredential:
    return _get_by_ref(credential_list(org=org), ref, "Credential")


def deployment_list(*, org: Org) -> QuerySet[Deployment]:
    return Deployment.objects.filter(org=org).select_related("credential").order_by("name")


def deployment_get(*, org: Org, deployment_id) -> Deployment:
    return object_by_id_or_not_found(deployment_list(org=org), deployment_id, "Deployment")


def deployment_get_by_ref(*, org: Org, ref: str) -> Deployment:
    return _get_by_ref(deployment_list(org=org), ref, "Deployment")


def alias_list(*, org: Org) -> QuerySet[ModelAlias]:
    return ModelAlias.objects.filter(org=org).prefetch_related("routes__deployment").order_by("name")


def alias_get(*, org: Org, alias_id) -> ModelAlias:
    return object_by_id_or_not_found(alias_list(org=org), alias_id, "Alias")


def alias_names(*, org: Org) -> set[str]:
    return set(ModelAlias.objects.filter(org=org).values_list("name", flat=True))


def virtual_key_list(*, org: Org) -> QuerySet[VirtualKey]:
    return VirtualKey.objects.filter(org=org).select_related("team", "created_by").order_by("-created_at")


def virtual_key_get(*, org: Org, key_id) -> VirtualKey:
    return object_by_id_or_not_found(virtual_key_list(org=org), key_id, "Key")


def secrets_due_for_rotation(*, org: Org, now: datetime.datetime | None = None) -> list[dict]:
    """Provider credentials and the SSO client secret last replaced more than `org.secret_rotation_days` ago,
    oldest first. Re-encryption is not rotation: it leaves `updated_at` alone."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=org.secret_rotation_days)
    found = [
        {"kind": "provider_credential", "id": credential.id, "name": credential.name, "updated_at": credential.updated_at}
        for credential in credential_list(org=org).filter(updated_at__lt=cutoff)
    ] + [
        {"kind": "sso_client_secret", "id": connection.id, "name": connection.issuer, "updated_at": connection.updated_at}
        for connection in SsoConnection.objects.filter(org=org, updated_at__lt=cutoff)
    ]
    for entry in found:
        entry["age_days"] = (now - entry["updated_at"]).days
    return sorted(found, key=lambda entry: entry["updated_at"])
