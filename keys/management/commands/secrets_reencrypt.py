from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor
from keys.crypto import DecryptionFailed, current_key_id
from keys.services import credentials_reencrypt, virtual_key_sealed_secrets_reencrypt
from sso.services import sso_client_secret_reencrypt
from tenants.context import org_context
from tenants.models import Org


class Command(BaseCommand):
    help = (
        "Re-encrypts provider credentials (and SSO client secrets) under the first key of GATEHOUSE_ENCRYPTION_KEYS, so that older keys "
        "can be removed from the ring. One transaction per org."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this org (slug)")

    def handle(self, *args, org: str | None, **options):
        orgs = Org.objects.order_by("slug")
        if org is not None:
            orgs = orgs.filter(slug=org)
            if not orgs.exists():
                raise CommandError(f"Unknown org {org!r}.")
        actor = Actor.system("manage.py secrets_reencrypt")
        total = 0
        for target in orgs:
            try:
                with org_context(target.id):
                    count = credentials_reencrypt(org=target, actor=actor)
                    count += sso_client_secret_reencrypt(org=target, actor=actor)
                    count += virtual_key_sealed_secrets_reencrypt(org=target, actor=actor)
            except DecryptionFailed as exc:
                raise CommandError(f"{target.slug}: {exc}; nothing in this org was changed.") from None
            total += count
            self.stdout.write(f"{target.slug}: {count} credential(s) re-encrypted")
        self.stdout.write(f"{total} credential(s) re-encrypted under key {current_key_id()!r}.")
