import io
import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from config.env import BASE_DIR
from keys import services
from keys.crypto import encryption_key_generate
from keys.models import ProviderCredential, VirtualKey, VirtualKeySecret
from keys.secrets import secret_hash
from tenants.context import org_context
from tenants.models import Org
from tenants.services import team_create
from tests.conftest import SYSTEM, unique_slug
from tests.keys.test_config_file import org_yaml
from tests.keys.test_services import PROVIDER_KEY, catalog_create, local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# apply_config ------------------------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path, monkeypatch):
    slug = unique_slug("cfg")
    monkeypatch.setenv("MAIN_KEY", "sk-main-SECRET")
    path = tmp_path / "gatehouse.yaml"
    path.write_text(org_yaml(slug))
    return slug, str(path)


def test_apply_config_prints_one_line_per_object_and_is_idempotent(config_file):
    slug, path = config_file
    first = run("apply_config", path).splitlines()
    assert first[0] == f"create org {slug}" and len(first) == 6
    org = Org.objects.get(slug=slug)
    with org_context(org.id):
        events = AuditEvent.objects.count()
        assert AuditEvent.objects.filter(actor_label="manage.py apply_config").count() == events
    second = run("apply_config", path).splitlines()
    assert second == [line.replace("create ", "unchanged ", 1) for line in first]
    with org_context(org.id):
        assert AuditEvent.objects.count() == events


def test_apply_config_dry_run_changes_nothing(config_file):
    slug, path = config_file
    output = run("apply_config", path, "--dry-run")
    assert f"create deployment {slug}/gpt" in output and output.endswith("Dry run: nothing was changed.\n")
    assert not Org.objects.filter(slug=slug).exists()


def test_apply_config_refuses_an_inline_secret_and_exits_non_zero(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(org_yaml("inline").replace("api_key_env: MAIN_KEY", "api_key: sk-inline-SECRET"))
    result = subprocess.run(
        [sys.executable, "manage.py", "apply_config", str(path)], cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "orgs[0].credentials[0].api_key: secrets are not accepted" in result.stderr
    assert "sk-inline-SECRET" not in result.stderr + result.stdout


def test_apply_config_reports_a_refusal_with_its_path(config_file, tmp_path):
    slug, path = config_file
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(path).read().replace("timeout_seconds: 30", "timeout_seconds: 900"))
    with pytest.raises(CommandError, match=r"orgs\[0\]\.deployments\[0\]\.timeout_seconds: Use a timeout"):
        run("apply_config", str(bad))
    assert not Org.objects.filter(slug=slug).exists()


# create_key ------------------------------------------------------------------------------

@pytest.fixture
def org_with_team(org_a):
    a, _ = org_a
    catalog_create(a, alias="chat")
    with org_context(a.id):
        team_create(org=a, slug="default", name="Default", actor=SYSTEM)
    return a


def test_create_key_prints_the_secret_once_as_json(org_with_team):
    a = org_with_team
    output = json.loads(run("create_key", "--org", a.slug, "--team", "default", "--models", "chat", "--json",
                            "--expires", "2999-01-31"))
    assert set(output) == {"id", "key", "org", "team", "models", "expires_at"}
    assert output["models"] == ["chat"] and output["expires_at"] == "2999-01-31T00:00:00+00:00"
    with org_context(a.id):
        key = VirtualKey.objects.get(id=output["id"])
        assert key.name == "cli" and key.team.slug == "default"
        assert VirtualKeySecret.objects.get(key=key).secret_hash == secret_hash(output["key"])


def test_create_key_as_text(org_with_team):
    output = run("create_key", "--org", org_with_team.slug, "--team", "default", "--models", "*", "--name", "ci")
    assert output.startswith("sk-gh-") and "shown once" in output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--org", "no-such-org", "--team", "default", "--models", "chat"], "Unknown org 'no-such-org'"),
        (["--team", "nope", "--models", "chat"], "Unknown team 'nope'"),
        (["--team", "default", "--models", "chat,missing"], "allowed_aliases: Unknown aliases in this org: missing"),
        (["--team", "default", "--models", "chat", "--expires", "next week"], "--expires: 'next week' is not an ISO 8601"),
        (["--team", "default", "--models", "chat", "--expires", "2001-01-01"], "expires_at: The expiry must be in the future"),
    ],
)
def test_create_key_errors(org_with_team, args, message):
    if "--org" not in args:
        args = ["--org", org_with_team.slug, *args]
    with pytest.raises(CommandError, match=message):
        run("create_key", *args)


# secrets_reencrypt -----------------------------------------------------------------------

def test_secrets_reencrypt_moves_credentials_to_the_current_key(org_a, org_b, settings):
    (a, _), (b, _) = org_a, org_b
    old, new = encryption_key_generate(), encryption_key_generate()
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"old:{old}"
    catalog_create(a)
    catalog_create(b)
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new},old:{old}"

    output = run("secrets_reencrypt", "--org", a.slug)
    assert f"{a.slug}: 1 credential(s) re-encrypted" in output and b.slug not in output
    output = run("secrets_reencrypt")
    assert f"{a.slug}: 0 credential(s)" in output and f"{b.slug}: 1 credential(s)" in output
    assert output.splitlines()[-1] == "1 credential(s) re-encrypted under key 'new'."

    settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new}"
    for org in (a, b):
        with org_context(org.id):
            credential = ProviderCredential.objects.get()
            assert credential.encryption_key_id == "new" and services.credential_api_key(credential) == PROVIDER_KEY
            assert AuditEvent.objects.filter(action="credential.reencrypt").count() == 1


def test_secrets_reencrypt_errors(org_a, settings):
    a, _ = org_a
    with pytest.raises(CommandError, match="Unknown org"):
        run("secrets_reencrypt", "--org", "no-such-org")
    catalog_create(a)
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"other:{encryption_key_generate()}"
    with pytest.raises(CommandError, match="credential 'openai-main': encryption key .* is not in"):
        run("secrets_reencrypt", "--org", a.slug)
