"""An org wired to the mock provider through the services, with budgets and rate limits made the same way."""
import contextlib
import dataclasses
import socket
import threading
import uuid
from decimal import Decimal

import pytest

from keys import services as key_services
from proxy.cache import redis_client
from spend import ledger
from spend.gate import spend_key_prefix
from tenants.context import org_context
from tenants.services import org_create, team_create
from tests.conftest import SYSTEM, unique_slug
from tests.proxy.conftest import gateway_start, gateway_url, provider  # noqa: F401  (the live gateway and mock)

PROVIDER_KEY = "provider-secret"
# $1 per million input tokens, $2 per million output tokens: a request's worst case is set by max_tokens.
PRICES = {"price_input_per_mtok": Decimal(1), "price_output_per_mtok": Decimal(2),
          "price_embedding_per_mtok": Decimal(1)}


@dataclasses.dataclass
class SpendOrg:
    org: object
    team: object
    key: object
    secret: str
    other_team: object
    other_key: object
    other_secret: str


@pytest.fixture
def spend_org(committed, provider, settings) -> SpendOrg:  # noqa: F811
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]
    org, _ = org_create(slug=unique_slug("spend"), name="Spend", data_region="us",
                        owner_email=f"{unique_slug('o')}@x.example", actor=SYSTEM)
    with org_context(org.id):
        team = team_create(org=org, slug="apps", name="Apps", actor=SYSTEM)
        other_team = team_create(org=org, slug="other", name="Other", actor=SYSTEM)
        openai = key_services.credential_create(org=org, name="openai", provider_kind="openai", api_key=PROVIDER_KEY,
                                                actor=SYSTEM)
        anthropic = key_services.credential_create(org=org, name="anthropic", provider_kind="anthropic",
                                                   api_key=PROVIDER_KEY, actor=SYSTEM)
        deployments = {
            "gpt": ("openai", "/v1", "mock-gpt", openai, PRICES),
            "claude": ("anthropic", "", "mock-claude", anthropic, PRICES),
            "cut": ("openai", "/v1", "mock-cut-6+chunks-20", openai, PRICES),
            "cut-claude": ("anthropic", "", "mock-cut-8+chunks-20", anthropic, PRICES),
            "cut-long": ("openai", "/v1", "mock-cut-1500+chunks-2000", openai, PRICES),
            "slow": ("openai", "/v1", "mock-slow-1500", openai, PRICES),
            "broken": ("openai", "/v1", "mock-error-500", openai, PRICES),
            "free": ("openai", "/v1", "mock-gpt", openai, {}),
        }
        for name, (kind, path, model, credential, prices) in deployments.items():
            deployment = key_services.deployment_create(
                org=org, actor=SYSTEM, name=name, provider_kind=kind, base_url=provider.base_url + path,
                upstream_model=model, credential=credential, **prices)
            key_services.alias_create(org=org, name=name, actor=SYSTEM, routes=[{"deployment": deployment}])
        key, secret = key_services.virtual_key_create(org=org, team=team, name="app", allowed_aliases=["*"],
                                                      expires_at=None, metadata={}, actor=SYSTEM)
        other_key, other_secret = key_services.virtual_key_create(
            org=org, team=other_team, name="other", allowed_aliases=["*"], expires_at=None, metadata={}, actor=SYSTEM)
    return SpendOrg(org=org, team=team, key=key, secret=secret, other_team=other_team, other_key=other_key,
                    other_secret=other_secret)


@pytest.fixture
def manual_ledger():
    """The in-process ledger buffer flushed by the test itself, not by the background thread."""
    ledger.spend_ledger_buffer.background = False
    try:
        yield ledger.spend_ledger_buffer
    finally:
        ledger.spend_ledger_buffer.flush()
        ledger.spend_ledger_buffer.background = True


def spend_counters_forget() -> int:
    """Deletes this database's budget and rate-limit counters, as a Redis restart without persistence would."""
    keys = list(redis_client().scan_iter(f"{spend_key_prefix()}:*", count=1000))
    if keys:
        redis_client().delete(*keys)
    return len(keys)


def request_id() -> str:
    return f"test-{uuid.uuid4().hex}"


class TcpRelay:
    """A TCP forwarder to a real server that the test can cut and restore: while cut, the server seems gone."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.cut_off = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.cut_off:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for each in (source, sink):
            with contextlib.suppress(OSError):
                each.close()

    def cut(self) -> None:
        self.cut_off = True
        sockets, self.sockets = self.sockets, []
        for each in sockets:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
                each.close()

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.cut()
        self.listener.close()
