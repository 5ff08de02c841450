import datetime

from django.utils import timezone

from audit.actors import Actor
from audit.services import audit_event_record
from requestlogs.models import RequestLog
from tenants.context import org_context
from tenants.models import Org

# Small batches, each in its own short transaction: row locks are held for milliseconds, so
# the proxy's inserts into the same table never wait behind an expiry run.
EXPIRY_BATCH_ROWS = 5000


def _expire_in_batches(*, org: Org, make_batch) -> int:
    total = 0
    while True:
        with org_context(org.id):
            done = make_batch()
        total += done
        if done < EXPIRY_BATCH_ROWS:
            return total


def request_logs_expire(*, org: Org, actor: Actor, now: datetime.datetime | None = None) -> dict[str, int]:
    """Deletes rows past the org's retention and clears text past its text retention."""
    now = now or timezone.now()
    rows_cutoff = now - datetime.timedelta(days=org.retention_days)
    text_cutoff = now - datetime.timedelta(days=org.text_retention_days)

    def delete_batch() -> int:
        ids = RequestLog.objects.filter(org=org, created_at__lt=rows_cutoff).order_by("created_at").values("id")
        deleted, _ = RequestLog.objects.filter(org=org, id__in=ids[:EXPIRY_BATCH_ROWS]).delete()
        return deleted

    def clear_text_batch() -> int:
        with_text = RequestLog.objects.filter(org=org, created_at__lt=text_cutoff).exclude(
            request_text__isnull=True, response_text__isnull=True
        ).order_by("created_at").values("id")
        return RequestLog.objects.filter(org=org, id__in=with_text[:EXPIRY_BATCH_ROWS]).update(
            request_text=None, response_text=None
        )

    result = {
        "rows_deleted": _expire_in_batches(org=org, make_batch=delete_batch),
        "texts_cleared": _expire_in_batches(org=org, make_batch=clear_text_batch),
    }
    if any(result.values()):
        with org_context(org.id):
            audit_event_record(
                org_id=org.id, actor=actor, action="request_logs.expire",
                changes={name: [None, count] for name, count in result.items()}
                | {"rows_before": [None, rows_cutoff.isoformat()], "text_before": [None, text_cutoff.isoformat()]},
            )
    return result
