"""What every per-org scheduled job shares: beat starts one task, which queues the per-org task
for each org, so that one org's failure or retry never holds up the others. And webhook delivery."""
import logging

import orjson
import requests
from celery import shared_task

from config.errors import ValidationFailed
from keys.ssrf import base_url_validate
from tenants.models import Org
from tenants.webhooks import webhook_signature

logger = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_SECONDS = 10


def for_each_org(task) -> int:
    """Queues `task(org_id)` once per org; returns how many were queued."""
    org_ids = list(Org.objects.values_list("id", flat=True))
    for org_id in org_ids:
        task.delay(str(org_id))
    return len(org_ids)


class WebhookRejected(Exception):
    pass


@shared_task(bind=True, acks_late=True, max_retries=5, autoretry_for=(requests.RequestException, WebhookRejected),
             retry_backoff=True, retry_backoff_max=600)
def webhook_deliver(self, org_id: str, message: dict) -> int | None:
    """POSTs one signed message; retried with backoff on a connection error or a 5xx/429 answer."""
    url = Org.objects.filter(id=org_id).values_list("webhook_url", flat=True).first()
    if not url:
        return None
    try:
        base_url_validate(url, field="webhook_url")  # again now: the name may resolve elsewhere than at save time
    except ValidationFailed as refused:
        logger.warning("webhook %s for org %s not sent: %s", message["id"], org_id, refused.message)
        return None
    body = orjson.dumps(message)
    response = requests.post(url, data=body, timeout=WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False, headers={
        "Content-Type": "application/json",
        "User-Agent": "Gatehouse-Webhook/1",
        "X-Gatehouse-Event": message["event"],
        "X-Gatehouse-Delivery": message["id"],
        "X-Gatehouse-Signature": webhook_signature(org_id, body),
    })
    if response.status_code == 429 or response.status_code >= 500:
        raise WebhookRejected(f"webhook answered {response.status_code}")
    if response.status_code >= 400:
        logger.warning("webhook %s for org %s refused with %s; not retried", message["id"], org_id, response.status_code)
    return response.status_code
