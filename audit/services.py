from django.db import models

from audit.actors import Actor
from audit.models import AuditEvent

SECRET_FIELD_NAMES = {"password", "secret", "secret_hash", "api_key", "token"}


def _masked(changes: dict) -> dict:
    return {name: ("***" if name in SECRET_FIELD_NAMES else value) for name, value in changes.items()}


def audit_event_record(
    *, org_id, actor: Actor, action: str, target: models.Model | None = None, changes: dict | None = None
) -> AuditEvent:
    """Record an event; call it inside the transaction of the change it describes."""
    return AuditEvent.objects.create(
        org_id=org_id,
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_label=actor.label[:254],
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        changes=_masked(changes or {}),
        source_ip=actor.ip,
        user_agent=actor.user_agent,
    )
