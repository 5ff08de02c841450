import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from audit.actors import Actor
from keys.services import virtual_key_create
from tenants import services
from tenants.context import org_context
from tenants.models import Org, Team

DEMO_ORG_SLUG = "demo"
DEMO_OWNER_EMAIL = "owner@demo.example"
DEMO_TEAM_SLUG = "default"


class Command(BaseCommand):
    help = (
        "Creates (or refreshes) the demo org, its owner and a team, issues a demo virtual key, and prints "
        "how to log in and call the gateway. `make run` first applies examples/demo.yaml, which wires the "
        "demo org to the local mock provider."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password", help="owner password (default: a new random one each run)")

    @transaction.atomic
    def handle(self, *args, password=None, **options):
        actor = Actor.system("manage.py seed_demo")
        org = Org.objects.filter(slug=DEMO_ORG_SLUG).first()
        if org is None:
            org, _ = services.org_create(
                slug=DEMO_ORG_SLUG, name="Demo Org", data_region="us", owner_email=DEMO_OWNER_EMAIL, actor=actor
            )
        with org_context(org.id):
            team = Team.objects.filter(org=org, slug=DEMO_TEAM_SLUG).first()
            if team is None:
                team = services.team_create(org=org, slug=DEMO_TEAM_SLUG, name="Default team", actor=actor)
            _, demo_key = virtual_key_create(
                org=org, team=team, name="demo key (make run)", allowed_aliases=["*"], expires_at=None,
                metadata={}, actor=actor,
            )
        owner = get_user_model().objects.get(email=DEMO_OWNER_EMAIL)
        password = password or secrets.token_urlsafe(12)
        owner.set_password(password)
        owner.save(update_fields=["password"])
        base_url = f"http://localhost:{os.environ.get('PORT', '8000')}"
        self.stdout.write(
            self.style.SUCCESS("Demo org ready.")
            + f"\n  Console:   {base_url}/login/\n  Email:     {DEMO_OWNER_EMAIL}\n  Password:  {password}\n"
            f"  API docs:  {base_url}/api/docs/\n  Demo key:  {demo_key}   (shown once)\n"
            f"  Try:       curl {base_url}/v1/chat/completions -H 'Authorization: Bearer {demo_key}' "
            "-H 'Content-Type: application/json' "
            "-d '{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'\n"
        )
