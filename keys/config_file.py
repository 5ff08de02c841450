"""The declarative configuration file of `manage.py apply_config` (format: docs/configuration.md).

`config_load` reads the YAML and checks its shape, reporting every problem under its YAML path
before anything changes. `config_apply` then creates or updates what the file names through the
services, so each change is validated, audited and reaches the proxy; what the file does not
name is left alone, and applying the same file again changes nothing.
"""
import contextlib
import dataclasses
import datetime
import decimal
import json
import os
from collections.abc import Callable, Mapping

import yaml
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.db import transaction

from audit.actors import Actor
from config.errors import DomainError, NotFound, ValidationFailed
from keys import selectors, services
from keys.models import ProviderKind
from tenants import services as tenant_services
from tenants.context import org_context
from tenants.models import DataRegion, LoggingLevel, Org, Role, Team, slug_validator

_MISSING = object()


class ConfigInvalid(Exception):
    """What is wrong with a configuration file: one line per problem, each starting with its YAML path."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class ConfigItem:
    """A team, credential, deployment or alias as the file gives it. `fields` holds only what the file
    sets (a credential's API key among them), so it is kept out of the repr."""

    path: str
    name: str | None
    fields: dict = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class OrgConfig:
    path: str
    slug: str | None
    settings: dict
    owner_email: str | None
    teams: list[ConfigItem]
    credentials: list[ConfigItem]
    deployments: list[ConfigItem]
    aliases: list[ConfigItem]


@dataclasses.dataclass(frozen=True)
class Config:
    orgs: list[OrgConfig]


class _Section:
    """One YAML mapping at a known path. Each read checks a field's type and records a problem
    instead of raising, so that one run reports everything; `done` flags the fields nobody read."""

    def __init__(self, value, *, path: str, problems: list[str]):
        self.path, self.problems, self.read_keys = path, problems, set()
        self.value = value if isinstance(value, dict) else {}
        if not isinstance(value, dict):
            problems.append(f"{path or 'the file'}: expected a mapping")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.at(key)}: {message}")

    def reject(self, key: str, message: str) -> None:
        self.read_keys.add(key)
        self.problem(key, message)

    def raw(self, key: str, kinds: tuple[type, ...], expected: str, *, required=False, nullable=False):
        self.read_keys.add(key)
        if key not in self.value:
            if required:
                self.problem(key, "required")
            return _MISSING
        value = self.value[key]
        if value is None and nullable:
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            # YAML reads an unquoted 2024-10-21 as a date.
            hint = " (quote it)" if isinstance(value, datetime.date) else ""
            self.problem(key, f"expected {expected}{hint}")
            return _MISSING
        return value

    def text(self, key: str, *, max_length: int, required=False, nullable=False, validator=None):
        value = self.raw(key, (str,), "a string", required=required, nullable=nullable)
        if isinstance(value, str) and len(value) > max_length:
            self.problem(key, f"at most {max_length} characters")
            return _MISSING
        if isinstance(value, str) and validator is not None:
            try:
                validator(value)
            except DjangoValidationError as exc:
                self.problem(key, " ".join(exc.messages))
                return _MISSING
        return value

    def choice(self, key: str, choices: list[str], *, required=False):
        value = self.raw(key, (str,), f"one of {', '.join(choices)}", required=required)
        if isinstance(value, str) and value not in choices:
            self.problem(key, f"expected one of {', '.join(choices)}, not {value!r}")
            return _MISSING
        return value

    def integer(self, key: str, *, nullable=False):
        return self.raw(key, (int,), "a whole number", nullable=nullable)

    def decimal(self, key: str, *, nullable=False):
        value = self.raw(key, (int, float), "a number", nullable=nullable)
        # Through str, so that 0.15 stays 0.15 rather than its binary approximation.
        return decimal.Decimal(str(value)) if isinstance(value, (int, float)) else value

    def boolean(self, key: str):
        return self.raw(key, (bool,), "true or false")

    def sections(self, key: str, *, required=False) -> list["_Section"]:
        items = self.raw(key, (list,), "a list", required=required)
        if not isinstance(items, list):
            return []
        return [
            _Section(item, path=f"{self.at(key)}[{index}]", problems=self.problems) for index, item in enumerate(items)
        ]

    def done(self) -> None:
        for key in self.value:
            if key not in self.read_keys:
                self.problem(str(key), "unknown field")


def _present(fields: dict) -> dict:
    return {name: value for name, value in fields.items() if value is not _MISSING}


def _item(section: _Section, name_key: str, fields: dict) -> ConfigItem:
    section.done()
    fields = _present(fields)
    return ConfigItem(path=section.path, name=fields.pop(name_key, None), fields=fields)


def _team_parse(section: _Section) -> ConfigItem:
    return _item(section, "slug", {
        "slug": section.text("slug", max_length=50, required=True, validator=slug_validator),
        "name": section.text("name", max_length=100, required=True),
    })


def _credential_parse(section: _Section, environ: Mapping[str, str]) -> ConfigItem:
    fields = {
        "name": section.text("name", max_length=50, required=True),
        "provider_kind": section.choice("provider_kind", ProviderKind.values, required=True),
    }
    if "api_key" in section.value:
        section.reject(
            "api_key", "secrets are not accepted in the file; set an environment variable and name it with api_key_env"
        )
    variable = section.text("api_key_env", max_length=200, required="api_key" not in section.value)
    if isinstance(variable, str):
        if environ.get(variable):
            fields["api_key"] = environ[variable]
        else:
            section.problem("api_key_env", f"the environment variable {variable} is not set or empty")
    return _item(section, "name", fields)


def _deployment_parse(section: _Section) -> ConfigItem:
    return _item(section, "name", {
        "name": section.text("name", max_length=50, required=True),
        "provider_kind": section.choice("provider_kind", ProviderKind.values, required=True),
        "base_url": section.text("base_url", max_length=500, required=True),
        "upstream_model": section.text("upstream_model", max_length=200, required=True),
        "api_version": section.text("api_version", max_length=40),
        "credential": section.text("credential", max_length=50, nullable=True),
        "region": section.choice("region", DataRegion.values),
        "hipaa_eligible": section.boolean("hipaa_eligible"),
        **{field: section.decimal(field, nullable=True) for field in services.PRICE_FIELDS},
        "timeout_seconds": section.raw("timeout_seconds", (int, float), "a number of seconds"),
        "max_output_tokens": section.integer("max_output_tokens", nullable=True),
    })


def _alias_parse(section: _Section) -> ConfigItem:
    routes = []
    for route in section.sections("routes", required=True):
        routes.append(_present({
            "deployment": route.text("deployment", max_length=100, required=True),
            "position": route.integer("position"),
            "weight": route.integer("weight"),
        }))
        route.done()
    return _item(section, "name", {"name": section.text("name", max_length=100, required=True), "routes": routes})


def _names_unique(named: list[tuple[str, str | None]], what: str, problems: list[str]) -> None:
    """`named`: (YAML path, name) pairs of one list."""
    seen = set()
    for path, name in named:
        if name is not None and name in seen:
            problems.append(f"{path}: another {what} is already named {name!r}")
        seen.add(name)


def _org_parse(section: _Section, environ: Mapping[str, str]) -> OrgConfig:
    slug = section.text("slug", max_length=50, required=True, validator=slug_validator)
    settings = _present({
        "name": section.text("name", max_length=100, required=True),
        "data_region": section.choice("data_region", DataRegion.values),
        "logging_level": section.choice("logging_level", LoggingLevel.values),
        "retention_days": section.integer("retention_days"),
    })
    if not 1 <= settings.get("retention_days", 1) <= 3650:
        section.problem("retention_days", "use 1 to 3650 days")
    owner_email = section.text("owner_email", max_length=254, validator=EmailValidator())
    org = OrgConfig(
        path=section.path, slug=None if slug is _MISSING else slug, settings=settings,
        owner_email=None if owner_email is _MISSING else owner_email,
        teams=[_team_parse(item) for item in section.sections("teams")],
        credentials=[_credential_parse(item, environ) for item in section.sections("credentials")],
        deployments=[_deployment_parse(item) for item in section.sections("deployments")],
        aliases=[_alias_parse(item) for item in section.sections("aliases")],
    )
    section.done()
    lists = (
        (org.teams, "team"), (org.credentials, "credential"), (org.deployments, "deployment"), (org.aliases, "alias")
    )
    for items, what in lists:
        _names_unique([(item.path, item.name) for item in items], f"{what} of this org", section.problems)
    return org


def config_parse(text: str, *, environ: Mapping[str, str] = os.environ) -> Config:
    """Raises ConfigInvalid listing every problem found."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigInvalid([f"not valid YAML: {exc}"]) from None
    problems: list[str] = []
    root = _Section(document, path="", problems=problems)
    orgs = [_org_parse(section, environ) for section in root.sections("orgs", required=True)]
    root.done()
    _names_unique([(org.path, org.slug) for org in orgs], "org in the file", problems)
    if problems:
        raise ConfigInvalid(problems)
    return Config(orgs=orgs)


def config_load(path: str | os.PathLike, *, environ: Mapping[str, str] = os.environ) -> Config:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigInvalid([f"{path}: {exc.strerror}"]) from None
    return config_parse(text, environ=environ)


# Applying ----------------------------------------------------------------------------------

def _shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _routes_shown(routes: list[dict]) -> str:
    """e.g. "0: gpt-4o, azure-gpt-4o*3; 1: claude" (position: deployments, with weights other than 1)."""
    positions: dict[int, list[str]] = {}
    for route in routes:
        weight = f"*{route['weight']}" if route["weight"] != 1 else ""
        positions.setdefault(route["position"], []).append(route["deployment"] + weight)
    return "; ".join(f"{position}: {', '.join(names)}" for position, names in positions.items())


@contextlib.contextmanager
def _problems_at(path: str):
    """Turns a service's refusal into a problem at the item's YAML path."""
    try:
        yield
    except DomainError as exc:
        raise ConfigInvalid([f"{path}.{exc.field}: {exc.message}" if exc.field else f"{path}: {exc.message}"]) from None


class _ConfigApplier:
    """Creates or updates one object at a time and says what it did, one line each."""

    def __init__(self, *, actor: Actor):
        self.actor = actor
        self.lines: list[str] = []

    def report(self, label: str, changes: list[str]) -> None:
        self.lines.append(f"update {label}: {', '.join(changes)}" if changes else f"unchanged {label}")

    def upsert(
        self, label: str, existing, fields: dict, *, create: Callable[[], object], update: Callable[..., object]
    ):
        """For objects whose file fields map onto model fields: create, update what differs, or nothing."""
        if existing is None:
            created = create()
            self.lines.append(f"create {label}")
            return created
        changes = services.field_changes(existing, fields)
        if changes:
            update(**{name: new for name, (_, new) in changes.items()})
        self.report(label, [f"{name} {_shown(old)} -> {_shown(new)}" for name, (old, new) in changes.items()])
        return existing

    def org(self, config: OrgConfig) -> Org:
        org = Org.objects.filter(slug=config.slug).first()
        if org is None and config.owner_email is None:
            raise ValidationFailed(f"required to create the org {config.slug!r}", field="owner_email")

        def create() -> Org:
            created, _ = tenant_services.org_create(
                slug=config.slug, name=config.settings["name"], owner_email=config.owner_email,
                data_region=config.settings.get("data_region", DataRegion.US), actor=self.actor,
            )
            update_settings(created, **config.settings)
            return created

        def update_settings(target: Org, **settings) -> None:
            with org_context(target.id):
                tenant_services.org_update(org=target, actor=self.actor, acting_role=Role.OWNER, **settings)

        return self.upsert(
            f"org {config.slug}", org, config.settings, create=create,
            update=lambda **settings: update_settings(org, **settings),
        )

    def team(self, org: Org, item: ConfigItem) -> None:
        team = Team.objects.filter(org=org, slug=item.name).first()
        self.upsert(
            f"team {org.slug}/{item.name}", team, item.fields,
            create=lambda: tenant_services.team_create(org=org, slug=item.name, actor=self.actor, **item.fields),
            update=lambda **changed: tenant_services.team_update(org=org, team=team, actor=self.actor, **changed),
        )

    def credential(self, org: Org, item: ConfigItem) -> None:
        label = f"credential {org.slug}/{item.name}"
        credential = selectors.credential_list(org=org).filter(name=item.name).first()
        if credential is None:
            services.credential_create(org=org, name=item.name, actor=self.actor, **item.fields)
            self.lines.append(f"create {label}")
            return
        if credential.provider_kind != item.fields["provider_kind"]:
            raise ValidationFailed(
                f"the credential exists for {credential.provider_kind} and its provider kind cannot change; "
                "give a credential for another provider another name",
                field="provider_kind",
            )
        unchanged = services.credential_api_key_matches(credential, item.fields["api_key"])
        changes = [] if unchanged else ["api_key replaced"]
        if changes:
            services.credential_update(org=org, credential=credential, actor=self.actor, api_key=item.fields["api_key"])
        self.report(label, changes)

    def deployment(self, org: Org, item: ConfigItem) -> None:
        fields = dict(item.fields)
        if fields.get("credential") is not None:
            try:
                fields["credential"] = selectors.credential_get_by_ref(org=org, ref=fields["credential"])
            except NotFound as exc:
                raise ValidationFailed(exc.message, field="credential") from None
        deployment = selectors.deployment_list(org=org).filter(name=item.name).first()
        self.upsert(
            f"deployment {org.slug}/{item.name}", deployment, fields,
            create=lambda: services.deployment_create(org=org, name=item.name, actor=self.actor, **fields),
            update=lambda **changed: services.deployment_update(
                org=org, deployment=deployment, actor=self.actor, **changed
            ),
        )

    def alias(self, org: Org, item: ConfigItem) -> None:
        label = f"alias {org.slug}/{item.name}"
        routes = item.fields["routes"]
        alias = selectors.alias_list(org=org).filter(name=item.name).first()
        if alias is None:
            services.alias_create(org=org, name=item.name, routes=routes, actor=self.actor)
            self.lines.append(f"create {label}")
            return
        current = services.alias_routes_describe(alias)
        wanted = services.alias_routes_normalize(org=org, routes=routes)
        changes = [f"routes {_routes_shown(current)} -> {_routes_shown(wanted)}"] if wanted != current else []
        if changes:
            services.alias_update(org=org, alias=alias, actor=self.actor, routes=routes)
        self.report(label, changes)


def config_apply(config: Config, *, actor: Actor, dry_run: bool = False) -> list[str]:
    """Applies the whole file in one transaction (rolled back for a dry run, or on the first
    refusal, raised as ConfigInvalid) and returns one line per object."""
    applier = _ConfigApplier(actor=actor)
    with transaction.atomic():
        for org_config in config.orgs:
            with _problems_at(org_config.path):
                org = applier.org(org_config)
            steps = (
                (applier.team, org_config.teams),
                (applier.credential, org_config.credentials),
                (applier.deployment, org_config.deployments),
                (applier.alias, org_config.aliases),
            )
            with org_context(org.id):
                for apply, items in steps:
                    for item in items:
                        with _problems_at(item.path):
                            apply(org, item)
        if dry_run:
            transaction.set_rollback(True)
    return applier.lines
