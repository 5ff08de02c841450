import datetime

import pytest
from django.utils import timezone

from accounts.models import AdminToken
from accounts.services import admin_token_create
from accounts.tasks import admin_tokens_expire_for_org
from audit.models import AuditEvent
from tenants.context import org_context
from tenants.models import Role
from tests.conftest import SYSTEM, unique_slug


@pytest.mark.worker
def test_a_real_worker_expires_tokens_inside_the_org_context(committed, celery_worker_queue):
    from tenants.services import org_create

    org, owner_membership = org_create(
        slug=unique_slug("worker"), name="Worker", data_region="us", owner_email=f"{unique_slug('o')}@x.example", actor=SYSTEM
    )
    with org_context(org.id):
        soon = timezone.now() + datetime.timedelta(minutes=5)
        stale, _ = admin_token_create(
            org=org, user=owner_membership.user, name="stale", role=Role.ADMIN, acting_role=Role.OWNER, expires_at=soon, actor=SYSTEM
        )
        live, _ = admin_token_create(
            org=org, user=owner_membership.user, name="live", role=Role.ADMIN, acting_role=Role.OWNER, expires_at=None, actor=SYSTEM
        )
        AdminToken.objects.filter(id=stale.id).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))

    result = admin_tokens_expire_for_org.apply_async(args=[str(org.id)], queue=celery_worker_queue)
    assert result.get(timeout=60) == 1

    with org_context(org.id):
        assert AdminToken.objects.get(id=stale.id).revoked_at is not None
        assert AdminToken.objects.get(id=live.id).revoked_at is None
        event = AuditEvent.objects.get(action="admin_token.revoke", target_id=str(stale.id))
        assert event.actor_kind == "system" and event.changes == {"reason": [None, "expired"]}

    # Idempotent: a second run finds nothing left to expire.
    again = admin_tokens_expire_for_org.apply_async(args=[str(org.id)], queue=celery_worker_queue)
    assert again.get(timeout=60) == 0
