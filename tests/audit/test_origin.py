import pytest
from django.test import RequestFactory

from audit.actors import Actor, ActorKind, actor_from_request
from audit.origin import REQUEST_ID_META_KEY, client_ip, request_id_for, user_agent


def request(remote_addr="203.0.113.9", forwarded=None, **meta):
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", REMOTE_ADDR=remote_addr, **meta)


@pytest.mark.parametrize(
    "trusted, remote_addr, forwarded, expected",
    [
        (0, "203.0.113.9", None, "203.0.113.9"),
        (0, "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # no proxy of ours: the header is the client's word
        (1, "10.0.0.2", "198.51.100.1", "198.51.100.1"),
        (1, "10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the forged first hop is ignored
        (2, "10.0.0.3", "6.6.6.6, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        (2, "10.0.0.3", "198.51.100.1", "10.0.0.3"),  # shorter than our chain: not believed
        (1, "10.0.0.2", "not-an-address", "10.0.0.2"),
        (1, "10.0.0.2", "198.51.100.1:4711", "198.51.100.1"),
        (1, "10.0.0.2", "[2001:DB8::1]:443", "2001:db8::1"),
        (1, "10.0.0.2", "::ffff:198.51.100.7", "198.51.100.7"),
        (0, "", None, None),
    ],
)
def test_client_ip_believes_only_trusted_proxies(settings, trusted, remote_addr, forwarded, expected):
    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = trusted
    assert client_ip(request(remote_addr, forwarded)) == expected


@pytest.mark.parametrize("offered, kept", [("abc-123", True), ("a.b:c_d", True), ("x" * 128, True), ("x" * 129, False),
                                           ("bad id", False), ("<script>", False), ("", False)])
def test_request_id_is_the_callers_when_well_formed(offered, kept):
    incoming = request(HTTP_X_REQUEST_ID=offered)
    request_id = request_id_for(incoming)
    assert (request_id == offered) is kept
    assert request_id_for(incoming) == request_id == incoming.META[REQUEST_ID_META_KEY]
    assert len(request_id) <= 128


def test_user_agent_is_bounded():
    assert user_agent(request(HTTP_USER_AGENT="a" * 1000)) == "a" * 256


@pytest.mark.django_db
def test_every_response_carries_the_request_id(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="req-42")["X-Request-Id"] == "req-42"
    generated = client.get("/healthz", HTTP_X_REQUEST_ID="bad id")["X-Request-Id"]
    assert generated != "bad id" and len(generated) == 32


@pytest.mark.django_db
def test_actor_from_request_for_each_kind(org_a, settings):
    from accounts.authentication import MasterKeyPrincipal
    from accounts.services import admin_token_create
    from tenants.context import org_context
    from tenants.models import Role
    from tests.conftest import SYSTEM

    settings.GATEHOUSE_TRUSTED_PROXY_COUNT = 1
    a, owner = org_a
    incoming = request("10.0.0.2", "6.6.6.6, 198.51.100.1", HTTP_USER_AGENT="cli/1", HTTP_X_REQUEST_ID="r-1")
    incoming.user = owner
    user = actor_from_request(incoming)
    assert user == Actor(kind=ActorKind.USER, user_id=owner.pk, label=owner.email, ip="198.51.100.1",
                         user_agent="cli/1", request_id="r-1")
    with org_context(a.id):
        token, _ = admin_token_create(org=a, user=owner, name="ci", role=Role.ADMIN, acting_role=Role.OWNER,
                                      expires_at=None, actor=SYSTEM)
    incoming.auth = token
    by_token = actor_from_request(incoming)
    assert (by_token.kind, by_token.user_id, by_token.token_id) == (ActorKind.ADMIN_TOKEN, owner.pk, token.id)
    assert owner.email in by_token.label and token.last_four in by_token.label
    incoming.auth = MasterKeyPrincipal()
    assert actor_from_request(incoming).kind == ActorKind.MASTER_KEY
