import datetime
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import dateparse, timezone

from audit.actors import Actor
from config.errors import DomainError
from keys import services
from tenants.context import org_context
from tenants.models import Org, Team


def _expiry_parse(value: str) -> datetime.datetime:
    """An ISO 8601 date or date-time; without a time zone, UTC."""
    try:
        moment = dateparse.parse_datetime(value)
        if moment is None:
            date = dateparse.parse_date(value)
            moment = datetime.datetime.combine(date, datetime.time()) if date else None
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--expires: {value!r} is not an ISO 8601 date or date-time (e.g. 2027-01-31T12:00:00Z).")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, datetime.timezone.utc)


class Command(BaseCommand):
    help = "Creates a virtual key for a team and prints its secret, once."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="org slug")
        parser.add_argument("--team", required=True, help="team slug")
        parser.add_argument("--models", required=True, help="comma-separated alias names the key may use, or '*'")
        parser.add_argument("--name", default="cli", help="a name for the key (default: cli)")
        parser.add_argument("--expires", help="expiry as an ISO 8601 date or date-time (default: never)")
        parser.add_argument("--json", dest="as_json", action="store_true", help="print a JSON object instead of text")

    def handle(self, *args, org: str, team: str, models: str, name: str, expires: str | None, as_json: bool, **options):
        expires_at = _expiry_parse(expires) if expires else None
        aliases = [alias.strip() for alias in models.split(",") if alias.strip()]
        found_org = Org.objects.filter(slug=org).first()
        if found_org is None:
            raise CommandError(f"Unknown org {org!r}.")
        with org_context(found_org.id):
            found_team = Team.objects.filter(org=found_org, slug=team).first()
            if found_team is None:
                raise CommandError(f"Unknown team {team!r} in the org {org!r}.")
            try:
                key, secret = services.virtual_key_create(
                    org=found_org, team=found_team, name=name, allowed_aliases=aliases, expires_at=expires_at,
                    metadata={}, actor=Actor.system("manage.py create_key"),
                )
            except DomainError as exc:
                raise CommandError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        if as_json:
            self.stdout.write(json.dumps({
                "id": str(key.id), "key": secret, "org": org, "team": team, "models": key.allowed_aliases,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }))
        else:
            self.stdout.write(f"{secret}\n(key {key.id} for {org}/{team}; shown once, it cannot be shown again)")

