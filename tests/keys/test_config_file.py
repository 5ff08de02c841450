import io
import pathlib
import textwrap

import pytest
from django.core.management import call_command

from audit.actors import Actor
from audit.models import AuditEvent
from keys import services
from keys.config_file import ConfigInvalid, config_apply, config_load, config_parse
from keys.models import Deployment, ProviderCredential
from keys.selectors import alias_list
from tenants.context import org_context
from tenants.models import Org
from tests.conftest import unique_slug
from tests.keys.test_services import local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
ACTOR = Actor.system("tests")
ENVIRON = {"MAIN_KEY": "sk-main-SECRET", "OTHER_KEY": "sk-other-SECRET"}


def org_yaml(slug: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        orgs:
          - slug: {slug}
            name: Config Org
            owner_email: owner@{slug}.example
            retention_days: 60
            teams:
              - slug: default
                name: Default team
            credentials:
              - name: main
                provider_kind: openai
                api_key_env: MAIN_KEY
            deployments:
              - name: gpt
                provider_kind: openai
                base_url: http://127.0.0.1:8001/v1
                upstream_model: gpt-4o
                credential: main
                price_input_per_mtok: 0.15
                timeout_seconds: 30
              - name: local
                provider_kind: openai_compatible
                base_url: http://127.0.0.1:8002/v1
                upstream_model: llama
            aliases:
              - name: chat
                routes:
                  - deployment: gpt
                    position: 0
                    weight: 2
                  - deployment: local
                    position: 1
        """) + extra


def edited(text: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def apply(text: str, *, environ=ENVIRON, dry_run: bool = False) -> list[str]:
    return config_apply(config_parse(text, environ=environ), actor=ACTOR, dry_run=dry_run)


def problems(text: str, *, environ=ENVIRON) -> list[str]:
    with pytest.raises(ConfigInvalid) as raised:
        apply(text, environ=environ)
    return raised.value.problems


def alias_routes(org, name: str) -> list[dict]:
    with org_context(org.id):
        return services.alias_routes_describe(alias_list(org=org).get(name=name))


def org_events(slug: str) -> int:
    org = Org.objects.get(slug=slug)
    with org_context(org.id):
        return AuditEvent.objects.count()


@pytest.fixture
def slug() -> str:
    return unique_slug("cfg")


def test_first_run_creates_everything_and_second_changes_nothing(slug):
    assert apply(org_yaml(slug)) == [
        f"create org {slug}", f"create team {slug}/default", f"create credential {slug}/main",
        f"create deployment {slug}/gpt", f"create deployment {slug}/local", f"create alias {slug}/chat",
    ]
    org = Org.objects.get(slug=slug)
    assert org.retention_days == 60
    with org_context(org.id):
        credential = ProviderCredential.objects.get(name="main")
        assert services.credential_api_key(credential) == "sk-main-SECRET"
        assert "sk-main-SECRET" not in str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert alias_routes(org, "chat") == [
        {"deployment": "gpt", "position": 0, "weight": 2}, {"deployment": "local", "position": 1, "weight": 1}
    ]
    events = org_events(slug)

    second = apply(org_yaml(slug))
    assert all(line.startswith("unchanged ") for line in second) and len(second) == 6
    assert org_events(slug) == events


def test_changes_are_reported_field_by_field(slug):
    apply(org_yaml(slug))
    changed = edited(
        org_yaml(slug),
        ("timeout_seconds: 30", "timeout_seconds: 60"), ("retention_days: 60", "retention_days: 90"), ("weight: 2", "weight: 1"),
    )
    lines = apply(changed, environ={**ENVIRON, "MAIN_KEY": "sk-rotated-SECRET"})
    assert f"update org {slug}: retention_days 60 -> 90" in lines
    assert f"update credential {slug}/main: api_key replaced" in lines
    assert f"update deployment {slug}/gpt: timeout_seconds 30 -> 60" in lines
    assert f"update alias {slug}/chat: routes 0: gpt*2; 1: local -> 0: gpt; 1: local" in lines
    assert f"unchanged deployment {slug}/local" in lines
    assert not any("SECRET" in line for line in lines)


def test_omitted_fields_are_left_as_they_are(slug):
    apply(org_yaml(slug))
    apply(edited(org_yaml(slug), ("        price_input_per_mtok: 0.15\n", "")))
    org = Org.objects.get(slug=slug)
    with org_context(org.id):
        assert str(Deployment.objects.get(name="gpt").price_input_per_mtok) == "0.150000"


def test_dry_run_changes_nothing(slug):
    lines = apply(org_yaml(slug), dry_run=True)
    assert lines[0] == f"create org {slug}" and len(lines) == 6
    assert not Org.objects.filter(slug=slug).exists()


def test_a_refusal_names_its_path_and_rolls_everything_back(slug):
    text = edited(org_yaml(slug), ("base_url: http://127.0.0.1:8002/v1", "base_url: http://10.0.0.8/v1"))
    assert problems(text) == [
        "orgs[0].deployments[1].base_url: The host '10.0.0.8' resolves to a non-public address (10.0.0.8); "
        "add it to GATEHOUSE_UPSTREAM_ALLOWLIST if this upstream is yours."
    ]
    assert not Org.objects.filter(slug=slug).exists()


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("api_key_env: MAIN_KEY", "api_key: sk-inline", "orgs[0].credentials[0].api_key: secrets are not accepted"),
        ("api_key_env: MAIN_KEY", "api_key_env: NOT_SET", "orgs[0].credentials[0].api_key_env: the environment variable NOT_SET"),
        ("timeout_seconds: 30", "timeout_seconds: thirty", "orgs[0].deployments[0].timeout_seconds: expected a number"),
        ("timeout_seconds: 30", "timeout_seconds: 0", "orgs[0].deployments[0].timeout_seconds: Use a timeout"),
        ("price_input_per_mtok: 0.15", "price_input_per_mtok: -1", "orgs[0].deployments[0].price_input_per_mtok: A price"),
        ("provider_kind: openai_compatible", "provider_kind: azure_openai", "orgs[0].deployments[1].api_version: Azure"),
        ("credential: main", "credential: missing", "orgs[0].deployments[0].credential: Credential 'missing' not found"),
        ("upstream_model: llama", "upstream_model: llama\n        colour: blue", "orgs[0].deployments[1].colour: unknown field"),
        ("- deployment: local", "- deployment: nowhere", "orgs[0].aliases[0].routes[1].deployment: Deployment 'nowhere'"),
        ("weight: 2", "weight: heavy", "orgs[0].aliases[0].routes[0].weight: expected a whole number"),
        ("name: chat", "name: chat room", "orgs[0].aliases[0].name: Use 1 to 100"),
        ("slug: default", "slug: Default Team", "orgs[0].teams[0].slug: Use 1 to 50"),
        ("retention_days: 60", "retention_days: 0", "orgs[0].retention_days: use 1 to 3650"),
        ("retention_days: 60", "data_region: mars", "orgs[0].data_region: expected one of us, eu"),
        (
            "upstream_model: llama", "upstream_model: llama\n        api_version: 2024-10-21",
            "orgs[0].deployments[1].api_version: expected a string (quote it)",
        ),
        ("owner_email: owner@", "owner_email: owner at ", "orgs[0].owner_email: Enter a valid email"),
    ],
)
def test_problems_name_their_yaml_path(slug, old, new, expected):
    found = problems(edited(org_yaml(slug), (old, new)))
    assert any(problem.startswith(expected) for problem in found), found
    assert not Org.objects.filter(slug=slug).exists()


def test_every_shape_problem_is_reported_at_once(slug):
    text = edited(org_yaml(slug), ("api_key_env: MAIN_KEY", "api_key: sk-inline"), ("weight: 2", "weight: heavy"))
    found = problems(text)
    assert len(found) == 2 and "sk-inline" not in "".join(found)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("orgs: [", "not valid YAML"),
        ("- just a list", "the file: expected a mapping"),
        ("orgs: {}", "orgs: expected a list"),
        ("{}", "orgs: required"),
        ("orgs: []\nversion: 2", "version: unknown field"),
        (
            "orgs:\n  - slug: x\n    name: X\n    teams:\n      - {slug: t, name: T}\n      - {slug: t, name: U}",
            "orgs[0].teams[1]: another team of this org is already named 't'",
        ),
        ("orgs:\n  - {slug: x, name: X}\n  - {slug: x, name: Y}", "orgs[1]: another org in the file is already named 'x'"),
    ],
)
def test_file_shape_problems(text, expected):
    found = problems(text)
    assert any(problem.startswith(expected) for problem in found), found


def test_new_org_needs_an_owner_email(slug):
    found = problems(f"orgs:\n  - slug: {slug}\n    name: X\n")
    assert found == [f"orgs[0].owner_email: required to create the org '{slug}'"]


def test_a_credentials_provider_kind_cannot_change(slug):
    apply(org_yaml(slug))
    text = edited(org_yaml(slug), ("provider_kind: openai\n        api_key_env", "provider_kind: anthropic\n        api_key_env"))
    assert problems(text)[0].startswith("orgs[0].credentials[0].provider_kind: the credential exists for openai")


def test_missing_file_is_a_problem():
    with pytest.raises(ConfigInvalid, match="No such file"):
        config_load("/nonexistent/gatehouse.yaml")


def test_the_demo_example_completes_the_seeded_demo_org(monkeypatch):
    monkeypatch.setenv("GATEHOUSE_DEMO_PROVIDER_KEY", "demo-key")
    call_command("seed_demo", "--password", "a-long-demo-password", stdout=io.StringIO())
    lines = config_apply(config_load(EXAMPLES / "demo.yaml"), actor=ACTOR)
    assert lines[:2] == ["unchanged org demo", "unchanged team demo/default"]
    assert lines[2:] == [
        "create credential demo/mock", "create credential demo/mock-anthropic",
        "create deployment demo/mock-openai", "create deployment demo/mock-anthropic",
        "create alias demo/gpt-4o-mini", "create alias demo/claude-sonnet", "create alias demo/chat",
        "create alias demo/text-embedding-3-small",
    ]
    chat = alias_routes(Org.objects.get(slug="demo"), "chat")
    assert [(route["deployment"], route["position"]) for route in chat] == [("mock-openai", 0), ("mock-anthropic", 1)]


def test_the_complete_example_applies(settings, monkeypatch):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = [
        "api.openai.com", "api.anthropic.com", "acme-eastus.openai.azure.com",
        "helvetia-swedencentral.openai.azure.com", "vllm.internal",
    ]
    variables = "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_EU_API_KEY", "EU_ANTHROPIC_API_KEY"
    for variable in variables:
        monkeypatch.setenv(variable, f"{variable.lower()}-value")
    config = config_load(EXAMPLES / "gatehouse.yaml")
    assert [org.slug for org in config.orgs] == ["acme", "helvetia-health"]
    lines = config_apply(config, actor=ACTOR, dry_run=True)
    assert "create deployment helvetia-health/azure-gpt-4o-eu" in lines
    assert not Org.objects.filter(slug="acme").exists()
