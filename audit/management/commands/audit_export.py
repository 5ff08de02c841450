import contextlib
import datetime
import sys

from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor
from audit.exports import FORMATS
from audit.selectors import audit_event_export_chunks
from audit.services import audit_export_record
from requestlogs.selectors import request_log_export_chunks
from tenants.context import org_context
from tenants.models import Org

DATASETS = {"audit_events": audit_event_export_chunks, "request_logs": request_log_export_chunks}


def _moment(value: str, option: str) -> datetime.datetime:
    """An ISO 8601 date or date-time; without a time zone, UTC."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option}: {value!r} is not an ISO 8601 date or date-time (e.g. 2026-11-01T00:00:00Z).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


class Command(BaseCommand):
    help = (
        "Exports an org's audit events (chain order, every signed field) or request logs of a time range "
        "as JSON Lines or Parquet."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="org slug")
        parser.add_argument("--since", required=True, help="ISO 8601 date or date-time, inclusive")
        parser.add_argument("--until", required=True, help="ISO 8601 date or date-time, exclusive")
        parser.add_argument("--format", dest="export_format", required=True, choices=FORMATS)
        parser.add_argument("--dataset", choices=sorted(DATASETS), default="audit_events")
        parser.add_argument("--output", required=True, help="file to write, or - for standard output")

    def handle(self, *args, org: str, since: str, until: str, export_format: str, output: str, dataset: str, **options):
        since_at, until_at = _moment(since, "--since"), _moment(until, "--until")
        if since_at >= until_at:
            raise CommandError("--until must be after --since.")
        found = Org.objects.filter(slug=org).first()
        if found is None:
            raise CommandError(f"Unknown org {org!r}.")
        with org_context(found.id):
            audit_export_record(
                org=found, actor=Actor.system("manage.py audit_export"), dataset=dataset,
                export_format=export_format, since=since_at, until=until_at,
            )
        chunks = DATASETS[dataset](org=found, since=since_at, until=until_at, export_format=export_format)
        with contextlib.ExitStack() as stack:
            target = sys.stdout.buffer if output == "-" else stack.enter_context(open(output, "wb"))
            for chunk in chunks:
                target.write(chunk)
        if output != "-":
            self.stderr.write(f"wrote {output}")
