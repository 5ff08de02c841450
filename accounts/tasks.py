from celery import shared_task

from accounts.services import admin_tokens_expire
from audit.actors import Actor
from tenants.context import org_context
from tenants.models import Org


@shared_task(acks_late=True, max_retries=3)
def admin_tokens_expire_for_org(org_id: str) -> int:
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        return admin_tokens_expire(org=org, actor=Actor.system("accounts.tasks.admin_tokens_expire_for_org"))


@shared_task
def admin_tokens_expire_all_orgs() -> int:
    org_ids = list(Org.objects.values_list("id", flat=True))
    for org_id in org_ids:
        admin_tokens_expire_for_org.delay(str(org_id))
    return len(org_ids)
