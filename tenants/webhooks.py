"""Signed webhook calls to the URL an org configured, for alerts that need a human: soft budget
limits, scheduled key rotations, overdue data-subject requests.

Deliveries run in a Celery task after the transaction that caused them commits, never on a request
path. The body is JSON; `X-Gatehouse-Signature: sha256=<hex>` is an HMAC-SHA256 of the body under the
org's signing secret (`org_webhook_signing_secret`), which an admin reads from the management API.
A payload never carries a secret or a prompt: callers pass ids, names and figures only. The URL passes the
same SSRF check as provider base URLs when it is saved and again before each delivery.
"""
import hashlib
import hmac
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone


def org_webhook_signing_secret(org_id) -> str:
    """Derived from the server pepper, so it is never stored and differs per org and per installation."""
    pepper = settings.GATEHOUSE_SECRET_PEPPER.encode()
    return "whsec_" + hmac.new(pepper, f"webhook:{org_id}".encode(), hashlib.sha256).hexdigest()


def webhook_signature(org_id, body: bytes) -> str:
    digest = hmac.new(org_webhook_signing_secret(org_id).encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def org_webhook_notify(*, org_id, event: str, payload: dict) -> str:
    """Queues one delivery after commit (a no-op delivery when the org has no webhook URL); returns its id."""
    from tenants.tasks import webhook_deliver

    delivery_id = str(uuid.uuid4())
    message = {"id": delivery_id, "event": event, "org_id": str(org_id), "created_at": timezone.now().isoformat(),
               "data": payload}
    transaction.on_commit(lambda: webhook_deliver.delay(str(org_id), message))
    return delivery_id
