from celery import shared_task

from accounts.services import admin_tokens_expire
from audit.actors import Actor
from tenants.context import org_context
from tenants.models import Org
from tenants.tasks import for_each_org


@shared_task(acks_late=True, max_retries=3)
def admin_tokens_expire_for_org(org_id: str) -> int:
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        return admin_tokens_expire(org=org, actor=Actor.system("accounts.tasks.admin_tokens_expire_for_org"))


@shared_task
def admin_tokens_expire_all_orgs() -> int:
    return for_each_org(admin_tokens_expire_for_org)
