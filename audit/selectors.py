import datetime
import uuid
from collections.abc import Iterator

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from audit.exports import Column, ColumnKind, export_chunks
from audit.models import AuditEvent
from tenants.context import org_context
from tenants.models import Org

# Every signed field, so that an auditor holding the key can verify an export on their own.
EXPORT_COLUMNS = (
    Column("org_id", ColumnKind.UUID),
    Column("seq", ColumnKind.INT),
    Column("id", ColumnKind.UUID),
    Column("created_at", ColumnKind.TIMESTAMP),
    Column("actor_kind"),
    Column("actor_user_id", ColumnKind.INT),
    Column("actor_token_id", ColumnKind.UUID),
    Column("actor_label"),
    Column("action"),
    Column("target_type"),
    Column("target_id"),
    Column("changes", ColumnKind.JSON),
    Column("source_ip", ColumnKind.IP),
    Column("user_agent"),
    Column("request_id"),
    Column("prev_hash"),
    Column("hash"),
)
EXPORT_BATCH = 2000


def _actor_filter(actor: str) -> Q:
    """An admin token's id, or a person's email (what they did in the console and with their tokens)."""
    try:
        return Q(actor_token_id=uuid.UUID(actor))
    except ValueError:
        pass
    user_ids = get_user_model().objects.filter(email__iexact=actor).values("id")
    return Q(actor_user_id__in=user_ids) | Q(actor_kind="user", actor_label__iexact=actor)


def audit_event_list(
    *, org: Org, since: datetime.datetime | None = None, until: datetime.datetime | None = None,
    actor: str | None = None, actor_kind: str | None = None, action: str | None = None,
    target_type: str | None = None, target_id: str | None = None,
) -> QuerySet[AuditEvent]:
    """The org's events, newest first; `since` is inclusive, `until` exclusive."""
    events = AuditEvent.objects.filter(org=org)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    if actor:
        events = events.filter(_actor_filter(actor))
    exact = {"actor_kind": actor_kind, "action": action, "target_type": target_type, "target_id": target_id}
    return events.filter(**{name: value for name, value in exact.items() if value}).order_by("-seq")


def audit_event_export_chunks(
    *, org: Org, since: datetime.datetime, until: datetime.datetime, export_format: str
) -> Iterator[bytes]:
    """The events of a time range in chain order, as a JSON Lines or Parquet byte stream.
    Enters the org context itself, because a streamed response is read after the view returned."""
    with org_context(org.id):
        rows = (
            AuditEvent.objects.filter(org=org, created_at__gte=since, created_at__lt=until)
            .order_by("seq")
            .values(*(column.name for column in EXPORT_COLUMNS))
            .iterator(chunk_size=EXPORT_BATCH)
        )
        yield from export_chunks(rows, EXPORT_COLUMNS, export_format=export_format)
