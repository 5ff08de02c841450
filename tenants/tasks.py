"""What every per-org scheduled job shares: beat starts one task, which queues the per-org task
for each org, so that one org's failure or retry never holds up the others."""
from tenants.models import Org


def for_each_org(task) -> int:
    """Queues `task(org_id)` once per org; returns how many were queued."""
    org_ids = list(Org.objects.values_list("id", flat=True))
    for org_id in org_ids:
        task.delay(str(org_id))
    return len(org_ids)
