from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor
from audit.services import audit_chain_verify
from tenants.context import org_context
from tenants.models import Org


class Command(BaseCommand):
    help = (
        "Walks each org's audit hash chain and reports the first event that was modified, deleted, inserted "
        "or reordered; records the outcome. Exits 1 when any org fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="org slug (default: every org)")

    def handle(self, *args, org: str | None, **options):
        orgs = Org.objects.filter(slug=org) if org else Org.objects.order_by("slug")
        if org and not orgs.exists():
            raise CommandError(f"Unknown org {org!r}.")
        actor = Actor.system("manage.py audit_verify")
        failed = []
        for found in orgs:
            with org_context(found.id):
                report = audit_chain_verify(org=found, actor=actor)
            if report.ok:
                self.stdout.write(f"{found.slug}: ok, {report.events_checked} events")
            else:
                failed.append(found.slug)
                self.stdout.write(
                    f"{found.slug}: FAILED at event {report.failure_seq} ({report.failure_kind}): {report.message}"
                )
        if failed:
            raise CommandError(f"The audit trail of {len(failed)} org(s) fails verification: {', '.join(failed)}.")
