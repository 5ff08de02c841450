from celery import shared_task

from audit.actors import Actor
from requestlogs.services import request_logs_expire
from tenants.context import org_context
from tenants.models import Org
from tenants.tasks import for_each_org


@shared_task(acks_late=True, max_retries=3)
def request_logs_expire_for_org(org_id: str) -> dict[str, int]:
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
    return request_logs_expire(org=org, actor=Actor.system("requestlogs.tasks.request_logs_expire_for_org"))


@shared_task
def request_logs_expire_all_orgs() -> int:
    return for_each_org(request_logs_expire_for_org)
