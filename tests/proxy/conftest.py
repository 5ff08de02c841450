"""A live gateway (gunicorn with gevent workers, as `make web` runs it) against the test
database, a real mock provider, and orgs wired to it through the services."""
import dataclasses
from decimal import Decimal
import os
import socket
import subprocess
import sys
import time
import uuid

import anthropic
import openai
import pytest
import requests

from keys import services as key_services
from tenants.context import org_context
from tenants.services import team_create
from tests.conftest import SYSTEM, unique_slug
from tests.mock_provider.fixture import MockProvider

PROVIDER_KEY = "provider-secret-do-not-leak"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def provider():
    mock = MockProvider().start()
    try:
        yield mock
    finally:
        mock.stop()


def gateway_start(database_url: str, *, workers: int = 2, log_path=None, **extra_env: str):
    """A gunicorn gateway as `make web` runs it, against `database_url`; returns (process, base URL)."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GATEHOUSE_UPSTREAM_ALLOWLIST": "127.0.0.1/32",
        "GATEHOUSE_RETRY_BACKOFF_SECONDS": "0.01",
        "GATEHOUSE_COOLDOWN_SECONDS": "30",
        "GATEHOUSE_METRICS_TOKEN": "scrape-token",
        "GATEHOUSE_METRICS_ALLOW": "10.255.255.0/24",
        "MAX_REQUEST_BYTES": str(256 * 1024),
        **extra_env,
    }
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--worker-class", "gevent", "--workers", str(workers),
         "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "10"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the gateway exited with {server.returncode}; log: {log_path}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except requests.RequestException:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the gateway did not start in 60 s")


@pytest.fixture(scope="session")
def gateway_url(test_database_url, tmp_path_factory):
    server, url = gateway_start(test_database_url, log_path=tmp_path_factory.mktemp("gateway") / "gunicorn.log")
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@dataclasses.dataclass
class WiredOrg:
    org: object
    team: object
    key: str
    key_id: uuid.UUID
    narrow_key: str  # may use only the alias "gpt"
    deployments: dict


DEPLOYMENTS = {
    # name: (provider kind, path on the mock, upstream model, extra options)
    "openai-ok": ("openai", "/v1", "mock-gpt", {}),
    "anthropic-ok": ("anthropic", "", "mock-claude", {}),
    "openai-500": ("openai", "/v1", "mock-error-500", {}),
    "openai-400": ("openai", "/v1", "mock-error-400", {}),
    "openai-401": ("openai", "/v1", "mock-error-401", {}),
    "openai-429": ("openai", "/v1", "mock-error-429", {}),
    "openai-slow": ("openai", "/v1", "mock-slow-3000", {"timeout_seconds": 1}),
    "openai-cut": ("openai", "/v1", "mock-cut-4", {}),
    "anthropic-cut": ("anthropic", "", "mock-cut-4", {}),
    "openai-malformed": ("openai", "/v1", "mock-malformed", {}),
    "openai-dribble": ("openai", "/v1", "mock-stream-delay-100+chunks-100", {}),
    "azure": ("azure_openai", "", "mock-gpt", {"api_version": "2024-10-21"}),
    "compat": ("openai_compatible", "/v1", "mock-llama", {}),
}
ALIASES = {
    "gpt": [("openai-ok", 0)],
    "claude": [("anthropic-ok", 0)],
    "fallback-500": [("openai-500", 0), ("openai-ok", 1)],
    "fallback-timeout": [("openai-slow", 0), ("anthropic-ok", 1)],
    "fallback-refused": [("refused", 0), ("openai-ok", 1)],
    "only-500": [("openai-500", 0)],
    "only-400": [("openai-400", 0), ("openai-ok", 1)],
    "only-401": [("openai-401", 0)],
    "only-429": [("openai-429", 0)],
    "only-slow": [("openai-slow", 0)],
    "only-refused": [("refused", 0)],
    "cut": [("openai-cut", 0)],
    "cut-anthropic": [("anthropic-cut", 0)],
    "malformed": [("openai-malformed", 0), ("openai-ok", 1)],
    "dribble": [("openai-dribble", 0)],
    "azure": [("azure", 0)],
    "compat": [("compat", 0)],
}


@pytest.fixture
def wired(committed, provider, settings) -> WiredOrg:
    """An org with a team, provider credentials, every kind of deployment, aliases and two keys, committed."""
    from tenants.services import org_create

    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]
    org, _ = org_create(slug=unique_slug("proxy"), name="Proxy", data_region="us",
                        owner_email=f"{unique_slug('o')}@x.example", actor=SYSTEM)
    with org_context(org.id):
        team = team_create(org=org, slug="apps", name="Apps", actor=SYSTEM)
        credentials = {
            kind: key_services.credential_create(org=org, name=kind.replace("_", "-"), provider_kind=kind,
                                                 api_key=PROVIDER_KEY, actor=SYSTEM)
            for kind in ("openai", "anthropic", "azure_openai")
        }
        deployments = {}
        for name, (kind, path, model, options) in DEPLOYMENTS.items():
            deployments[name] = key_services.deployment_create(
                org=org, actor=SYSTEM, name=name, provider_kind=kind, base_url=provider.base_url + path,
                upstream_model=model, credential=credentials.get(kind), price_input_per_mtok=Decimal(1), price_output_per_mtok=Decimal(2),
                price_embedding_per_mtok=Decimal(1), **options,
            )
        deployments["refused"] = key_services.deployment_create(
            org=org, actor=SYSTEM, name="refused", provider_kind="openai", base_url="http://127.0.0.1:9/v1",
            upstream_model="mock-gpt", credential=credentials["openai"], price_input_per_mtok=Decimal(1),
            price_output_per_mtok=Decimal(2),
        )
        for alias, chain in ALIASES.items():
            key_services.alias_create(org=org, name=alias, actor=SYSTEM, routes=[
                {"deployment": deployment, "position": position} for deployment, position in chain])
        key, secret = key_services.virtual_key_create(
            org=org, team=team, name="app", allowed_aliases=["*"], expires_at=None, metadata={}, actor=SYSTEM)
        _, narrow = key_services.virtual_key_create(
            org=org, team=team, name="narrow", allowed_aliases=["gpt"], expires_at=None, metadata={}, actor=SYSTEM)
    return WiredOrg(org=org, team=team, key=secret, key_id=key.id, narrow_key=narrow, deployments=deployments)

@pytest.fixture
def oa(gateway_url, wired):
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=wired.key, max_retries=0, timeout=30)


@pytest.fixture
def an(gateway_url, wired):
    return anthropic.Anthropic(base_url=gateway_url, api_key=wired.key, max_retries=0, timeout=30)
