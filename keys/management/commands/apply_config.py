from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor
from keys.config_file import ConfigInvalid, config_apply, config_load


class Command(BaseCommand):
    help = (
        "Creates or updates orgs, teams, provider credentials, deployments and model aliases from a YAML file "
        "(docs/configuration.md). Idempotent; never deletes. With --dry-run, prints the plan and changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the YAML configuration file")
        parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")

    def handle(self, *args, file: str, dry_run: bool, **options):
        try:
            lines = config_apply(config_load(file), actor=Actor.system("manage.py apply_config"), dry_run=dry_run)
        except ConfigInvalid as exc:
            raise CommandError(f"{file}: nothing was changed:\n  " + "\n  ".join(exc.problems)) from None
        for line in lines:
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
