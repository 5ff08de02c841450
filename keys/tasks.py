from celery import shared_task
from django.conf import settings

from audit.actors import Actor
from keys.services import credentials_reencrypt, virtual_key_sealed_secrets_reencrypt, virtual_keys_rotate_due
from sso.services import sso_client_secret_reencrypt
from tenants.context import org_context
from tenants.models import Org
from tenants.tasks import for_each_org


@shared_task(acks_late=True, max_retries=3)
def virtual_keys_rotate_due_for_org(org_id: str) -> int:
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        return virtual_keys_rotate_due(
            org=org, actor=Actor.system("keys.tasks.virtual_keys_rotate_due_for_org"),
            grace_seconds=settings.GATEHOUSE_KEY_ROTATION_GRACE_SECONDS,
        )


@shared_task
def virtual_keys_rotate_due_all_orgs() -> int:
    """Hourly (CELERY_BEAT_SCHEDULE): each org's keys whose scheduled rotation is due get a successor."""
    return for_each_org(virtual_keys_rotate_due_for_org)


@shared_task(acks_late=True, max_retries=3)
def secrets_reencrypt_for_org(org_id: str) -> int:
    """Like `manage.py secrets_reencrypt`: provider credentials, the SSO client secret and unrevealed key
    secrets, under the newest key of GATEHOUSE_ENCRYPTION_KEYS, in one transaction."""
    actor = Actor.system("keys.tasks.secrets_reencrypt_for_org")
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        return (credentials_reencrypt(org=org, actor=actor) + sso_client_secret_reencrypt(org=org, actor=actor)
                + virtual_key_sealed_secrets_reencrypt(org=org, actor=actor))


@shared_task
def secrets_reencrypt_all_orgs() -> int:
    """Nightly (CELERY_BEAT_SCHEDULE)."""
    return for_each_org(secrets_reencrypt_for_org)
