from celery import shared_task

from audit.actors import Actor
from audit.services import audit_chain_verify
from tenants.context import org_context
from tenants.models import Org
from tenants.tasks import for_each_org


@shared_task(acks_late=True, max_retries=3)
def audit_verify_for_org(org_id: str) -> bool:
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        return audit_chain_verify(org=org, actor=Actor.system("audit.tasks.audit_verify_for_org")).ok


@shared_task
def audit_verify_all_orgs() -> int:
    """Nightly (CELERY_BEAT_SCHEDULE): each org's chain is walked and the outcome recorded."""
    return for_each_org(audit_verify_for_org)
