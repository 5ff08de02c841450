import datetime
import logging
import uuid

from django.db import models, transaction

from audit import chain
from audit.actors import Actor
from audit.masking import secrets_masked
from audit.models import AuditEvent, AuditVerification
from audit.origin import current_request_id
from tenants.models import Org

logger = logging.getLogger(__name__)


def _event_insert(event: AuditEvent) -> None:
    chain.event_seal(event)
    event.save(force_insert=True)


@transaction.atomic
def audit_event_record(
    *, org_id, actor: Actor, action: str, target: models.Model | None = None, changes: dict | None = None
) -> AuditEvent:
    """Record an event; call it inside the transaction of the change it describes.

    `changes` maps a field to [before, after]; values under secret-sounding keys are masked at any depth.
    The event is appended to the org's hash chain (see audit/chain.py)."""
    event = AuditEvent(
        org_id=uuid.UUID(str(org_id)),
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        actor_token_id=actor.token_id,
        actor_label=actor.label[:254],
        action=action,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        changes=secrets_masked(changes or {}),
        source_ip=actor.ip,
        user_agent=actor.user_agent[:256],
        request_id=(actor.request_id or current_request_id() or "")[:128],
    )
    _event_insert(event)
    return event


def audit_export_record(
    *, org: Org, actor: Actor, dataset: str, export_format: str, since: datetime.datetime, until: datetime.datetime
) -> AuditEvent:
    """Every export of org data (audit events, request logs) is itself an audit event."""
    return audit_event_record(
        org_id=org.id, actor=actor, action="audit.export", target=org,
        changes={
            "dataset": [None, dataset], "format": [None, export_format],
            "since": [None, since.isoformat()], "until": [None, until.isoformat()],
        },
    )


def audit_verification_latest_passed(*, org: Org) -> AuditVerification | None:
    """The newest passing verification whose own signature holds: the anchor of the next walk."""
    for verification in AuditVerification.objects.filter(org=org, ok=True).order_by("-created_at")[:20]:
        if chain.verification_is_signed(verification):
            return verification
    return None


@transaction.atomic
def audit_chain_verify(*, org: Org, actor: Actor) -> chain.ChainReport:
    """Walks the org's chain and records the outcome as an AuditVerification. Call it inside `org_context`."""
    report = chain.chain_verify(org_id=org.id, anchor=audit_verification_latest_passed(org=org))
    verification = AuditVerification(
        org=org, ok=report.ok, events_checked=report.events_checked, head_seq=report.head_seq,
        head_hash=report.head_hash, failure_seq=report.failure_seq, failure_kind=report.failure_kind,
        message=report.message, actor_label=actor.label[:254],
    )
    chain.verification_seal(verification)
    verification.save(force_insert=True)
    if not report.ok:
        logger.error("audit chain of org %s fails verification at event %s: %s", org.slug, report.failure_seq, report.message)
    return report
