"""Every mutating management API endpoint records its audit event in the transaction of its change.

The endpoints are found by walking the URL configuration (every POST, PUT, PATCH and DELETE handler
under /api/v1/), so a new endpoint fails `test_every_mutating_endpoint_has_a_case` until it gets a
case below. For each case:
- a request that fails (bad input, unknown object, conflict) changes nothing and records nothing;
- a request whose audit event cannot be written fails as a whole: its change is rolled back too;
- a request that succeeds records at least one event carrying the request's id.
"""
import dataclasses
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.services import admin_token_create
from audit.models import AuditEvent
from keys import services as key_services
from keys.models import VirtualKey
from tenants.checks import org_owned_models
from tenants.context import org_context
from tenants.models import Membership, Org, Role
from tenants.services import team_create, team_member_add
from tests.conftest import SYSTEM
from tests.keys.test_services import LOCAL_BASE_URL, PROVIDER_KEY, catalog_create, local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db

API_PREFIX = "api/v1/"
MUTATING_METHODS = ("post", "put", "patch", "delete")
MASTER_KEY = "mk-test-" + uuid.uuid4().hex


def _url_patterns(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _url_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def mutating_endpoints() -> set[tuple[str, str]]:
    """(URL name, method) of every mutating handler under /api/v1/."""
    found = set()
    for route, pattern in _url_patterns(get_resolver().url_patterns):
        if not route.startswith(API_PREFIX):
            continue
        view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
        assert view is not None, f"{route}: not a class-based view; say here which methods change state"
        found |= {(pattern.name or route, method.upper()) for method in MUTATING_METHODS if hasattr(view, method)}
    return found


@dataclasses.dataclass
class World:
    """An org with one of everything, built through the services."""

    org: Org
    owner: object
    client: APIClient  # the owner's verified console session
    member_client: APIClient
    member_membership: Membership
    objects: dict

    def url(self, *parts) -> str:
        return "/api/v1/orgs/" + "/".join([self.org.slug, *map(str, parts)]) + "/"


@dataclasses.dataclass(frozen=True)
class Case:
    path: str
    body: dict | None = None
    bad_body: dict | None = None  # sent to `path`, or
    bad_path: str | None = None  # an unknown object, a conflict...
    master_key: bool = False
    bad_as_member: bool = False  # when no input can fail: a member (not an owner or admin) is refused
    event_org: Callable | None = None  # the org whose trail gets the event, from the response (default: the world's)


@pytest.fixture
def world(org_a, add_member, api_as, settings) -> World:
    settings.GATEHOUSE_MASTER_KEY = MASTER_KEY
    a, owner = org_a
    member = add_member(a, "member")
    credential, deployment, alias = catalog_create(a)
    with org_context(a.id):
        membership = Membership.objects.get(org=a, user=member)
        team = team_create(org=a, slug="search", name="Search", actor=SYSTEM)
        spare_team = team_create(org=a, slug="spare", name="Spare", actor=SYSTEM)
        team_membership = team_member_add(org=a, team=team, membership=membership, is_team_admin=False, actor=SYSTEM)
        token, _ = admin_token_create(org=a, user=owner, name="ci", role=Role.ADMIN, acting_role=Role.OWNER,
                                      expires_at=None, actor=SYSTEM)
        spare_credential = key_services.credential_create(org=a, name="spare", provider_kind="anthropic",
                                                          api_key=PROVIDER_KEY, actor=SYSTEM)
        spare_deployment = key_services.deployment_create(
            org=a, name="spare-dep", provider_kind="openai", base_url=LOCAL_BASE_URL, upstream_model="gpt-4o-mini",
            credential=credential, actor=SYSTEM,
        )
        key, _ = key_services.virtual_key_create(org=a, team=team, name="app", allowed_aliases=["*"], expires_at=None,
                                                 metadata={}, actor=SYSTEM)
        TOTPDevice.objects.create(user=member, name="phone", confirmed=True)
        sso = _sso_connection_create(a)
    return World(org=a, owner=owner, client=api_as(owner), member_client=api_as(member), member_membership=membership, objects={
        "team": team, "spare_team": spare_team, "team_membership": team_membership, "token": token,
        "credential": credential, "spare_credential": spare_credential, "deployment": deployment,
        "spare_deployment": spare_deployment, "alias": alias, "key": key, "sso": sso,
    })


def _sso_connection_create(org):
    from sso.services import sso_connection_save

    return sso_connection_save(
        org=org, actor=SYSTEM, issuer="http://127.0.0.1:9/", client_id="gatehouse", client_secret="idp-secret",
        domains=[f"{org.slug}.example"],
    )


def _route(deployment: str) -> list[dict]:
    return [{"deployment": deployment}]


def _budget(world: World):
    from spend.services import budget_create

    with org_context(world.org.id):
        return budget_create(org=world.org, actor=SYSTEM, scope="team", team=world.objects["team"], period="daily",
                             amount_usd=10)


def _rate_limit(world: World):
    from spend.services import rate_limit_create

    with org_context(world.org.id):
        return rate_limit_create(org=world.org, actor=SYSTEM, scope="key", key=world.objects["key"],
                                 requests_per_minute=60)


CASES: dict[tuple[str, str], Callable[[World], Case]] = {
    ("org-list", "POST"): lambda w: Case(
        "/api/v1/orgs/", {"slug": f"new-{uuid.uuid4().hex[:8]}", "name": "New", "owner_email": "boss@new.example"},
        bad_body={"slug": "Not A Slug", "name": "New", "owner_email": "boss@new.example"}, master_key=True,
        event_org=lambda response: response.json()["org"]["id"],
    ),
    ("org-detail", "PATCH"): lambda w: Case(w.url(), {"name": "Renamed"}, bad_body={"retention_days": 0}),
    ("team-list", "POST"): lambda w: Case(w.url("teams"), {"slug": "new", "name": "New"}, bad_body={"slug": "search", "name": "Dup"}),
    ("team-detail", "PATCH"): lambda w: Case(w.url("teams", w.objects["team"].id), {"name": "Search 2"},
                                             bad_body={"slug": "Not A Slug"}),
    ("team-detail", "DELETE"): lambda w: Case(w.url("teams", w.objects["spare_team"].id), bad_path=w.url("teams", uuid.uuid4())),
    ("team-member-list", "POST"): lambda w: Case(
        w.url("teams", w.objects["spare_team"].id, "members"), {"membership_id": str(w.member_membership.id)},
        bad_body={"membership_id": str(uuid.uuid4())},
    ),
    ("team-member-detail", "DELETE"): lambda w: Case(
        w.url("teams", w.objects["team"].id, "members", w.objects["team_membership"].id),
        bad_path=w.url("teams", w.objects["team"].id, "members", uuid.uuid4()),
    ),
    ("member-list", "POST"): lambda w: Case(w.url("members"), {"email": "new@people.example", "role": "viewer"},
                                            bad_body={"email": "not-an-email"}),
    ("member-detail", "PATCH"): lambda w: Case(w.url("members", w.member_membership.id), {"role": "admin"},
                                               bad_body={"role": "god"}),
    ("member-detail", "DELETE"): lambda w: Case(
        w.url("members", w.member_membership.id), bad_path=w.url("members", _owner_membership_id(w)),  # the last owner
    ),
    ("member-mfa-reset", "DELETE"): lambda w: Case(
        w.url("members", w.member_membership.id, "mfa"), bad_path=w.url("members", _owner_membership_id(w), "mfa"),
    ),
    ("sso-connection", "PUT"): lambda w: Case(
        w.url("sso"),
        {"issuer": "http://127.0.0.1:9/", "client_id": "gatehouse-2", "client_secret": "idp-secret-2",
         "domains": [f"{w.org.slug}.example"]},
        bad_body={"issuer": "ftp://idp.example", "client_id": "x", "client_secret": "s", "domains": [f"{w.org.slug}.example"]},
    ),
    ("sso-connection", "DELETE"): lambda w: Case(w.url("sso"), bad_as_member=True),
    ("admin-token-list", "POST"): lambda w: Case(w.url("tokens"), {"name": "deploy"}, bad_body={"name": ""}),
    ("admin-token-detail", "DELETE"): lambda w: Case(w.url("tokens", w.objects["token"].id), bad_path=w.url("tokens", uuid.uuid4())),
    ("credential-list", "POST"): lambda w: Case(
        w.url("credentials"), {"name": "azure", "provider_kind": "azure_openai", "api_key": "k"},
        bad_body={"name": "openai-main", "provider_kind": "openai", "api_key": "k"},
    ),
    ("credential-detail", "PATCH"): lambda w: Case(w.url("credentials", w.objects["credential"].id), {"name": "renamed"},
                                                   bad_body={"name": "spare"}),
    ("credential-detail", "DELETE"): lambda w: Case(
        w.url("credentials", w.objects["spare_credential"].id), bad_path=w.url("credentials", w.objects["credential"].id),
    ),
    ("deployment-list", "POST"): lambda w: Case(
        w.url("deployments"),
        {"name": "new", "provider_kind": "openai", "base_url": LOCAL_BASE_URL, "upstream_model": "m", "credential": "openai-main"},
        bad_body={"name": "new", "provider_kind": "openai", "base_url": "http://169.254.169.254/", "upstream_model": "m",
                  "credential": "openai-main"},
    ),
    ("deployment-detail", "PATCH"): lambda w: Case(w.url("deployments", w.objects["deployment"].id), {"timeout_seconds": 30},
                                                   bad_body={"timeout_seconds": 0}),
    ("deployment-detail", "DELETE"): lambda w: Case(
        w.url("deployments", w.objects["spare_deployment"].id), bad_path=w.url("deployments", w.objects["deployment"].id),
    ),
    ("alias-list", "POST"): lambda w: Case(w.url("aliases"), {"name": "new", "routes": _route("gpt")},
                                           bad_body={"name": "new", "routes": _route("missing")}),
    ("alias-detail", "PATCH"): lambda w: Case(w.url("aliases", w.objects["alias"].id), {"routes": _route("spare-dep")},
                                              bad_body={"routes": []}),
    ("alias-detail", "DELETE"): lambda w: Case(w.url("aliases", w.objects["alias"].id), bad_path=w.url("aliases", uuid.uuid4())),
    ("virtual-key-list", "POST"): lambda w: Case(
        w.url("keys"), {"name": "new", "team_id": str(w.objects["team"].id), "allowed_aliases": ["*"]},
        bad_body={"name": "new", "team_id": str(w.objects["team"].id), "allowed_aliases": ["missing"]},
    ),
    ("virtual-key-detail", "DELETE"): lambda w: Case(w.url("keys", w.objects["key"].id), bad_path=w.url("keys", uuid.uuid4())),
    ("virtual-key-rotate", "POST"): lambda w: Case(w.url("keys", w.objects["key"].id, "rotate"), {"grace_seconds": 60},
                                                   bad_body={"grace_seconds": -1}),
    ("budget-list", "POST"): lambda w: Case(w.url("budgets"), {"scope": "org", "amount_usd": "100", "period": "monthly"},
                                            bad_body={"scope": "org", "amount_usd": "-1", "period": "monthly"}),
    ("budget-detail", "PATCH"): lambda w: Case(w.url("budgets", _budget(w).id), {"amount_usd": "50"},
                                               bad_body={"period": "hourly"}),
    ("budget-detail", "DELETE"): lambda w: Case(w.url("budgets", _budget(w).id), bad_path=w.url("budgets", uuid.uuid4())),
    ("rate-limit-list", "POST"): lambda w: Case(
        w.url("rate-limits"), {"scope": "team", "team_id": str(w.objects["team"].id), "max_concurrent": 5},
        bad_body={"scope": "key", "key_id": str(uuid.uuid4()), "max_concurrent": 5}),
    ("rate-limit-detail", "PATCH"): lambda w: Case(w.url("rate-limits", _rate_limit(w).id), {"max_concurrent": 5},
                                                   bad_body={"max_concurrent": 0}),
    ("rate-limit-detail", "DELETE"): lambda w: Case(w.url("rate-limits", _rate_limit(w).id),
                                                    bad_path=w.url("rate-limits", uuid.uuid4())),
    ("virtual-key-detail", "PATCH"): lambda w: Case(w.url("keys", w.objects["key"].id), {"rotation_days": 30},
                                                    bad_body={"rotation_days": 0}),
    ("virtual-key-reveal-successor", "POST"): lambda w: _successor_pending(w) or Case(
        w.url("keys", w.objects["key"].id, "reveal-successor"), bad_path=w.url("keys", uuid.uuid4(), "reveal-successor"),
    ),
    ("privacy-request-list", "POST"): lambda w: Case(
        w.url("privacy-requests"), {"kind": "access", "subject_kind": "end_user", "subject_value": "alice"},
        bad_body={"kind": "access", "subject_kind": "end_user", "subject_value": ""},
    ),
    ("guardrail-policy", "PATCH"): lambda w: Case(w.url("guardrails", "policy"), {"actions": {"email": "redact"}},
                                                  bad_body={"actions": {"email": "explode"}}),
    ("team-guardrails", "PATCH"): lambda w: Case(w.url("guardrails", "teams", w.objects["team"].id), {"handles_phi": True},
                                                 bad_body={"approved_aliases": ["missing"]}),
    ("key-guardrails", "PATCH"): lambda w: Case(w.url("guardrails", "keys", w.objects["key"].id), {"handles_phi": True},
                                                bad_body={"actions": {"credit_score": "block"}}),
    ("custom-detector-list", "POST"): lambda w: Case(
        w.url("guardrails", "detectors"), {"name": "order-id", "pattern": "ORD-\\d{6}"},
        bad_body={"name": "order-id", "pattern": "ORD-(\\d+"},
    ),
    ("custom-detector-detail", "PATCH"): lambda w: Case(
        w.url("guardrails", "detectors", _custom_detector(w).id), {"pattern": "ORD-\\d{8}"}, bad_body={"pattern": "(a+)+$"},
    ),
    ("custom-detector-detail", "DELETE"): lambda w: Case(
        w.url("guardrails", "detectors", _custom_detector(w).id), bad_path=w.url("guardrails", "detectors", uuid.uuid4()),
    ),
}


def _custom_detector(world: World):
    from guardrails.services import custom_detector_create

    with org_context(world.org.id):
        return custom_detector_create(org=world.org, name="ticket", pattern="TCK-\\d{5}", actor=SYSTEM)


def _successor_pending(world: World) -> None:
    """A scheduled rotation of the world's key, so that there is a new secret to reveal."""
    key = world.objects["key"]
    with org_context(world.org.id):
        key_services.virtual_key_rotation_schedule(org=world.org, key=key, rotation_days=1, actor=SYSTEM)
        VirtualKey.objects.filter(id=key.id).update(next_rotation_at=timezone.now())
        key_services.virtual_key_rotate_scheduled(org=world.org, key=key, grace_seconds=60, actor=SYSTEM)


def _owner_membership_id(world: World):
    with org_context(world.org.id):
        return Membership.objects.get(org=world.org, user=world.owner).id


def state(world: World) -> dict:
    """Everything a management request could change: every tenant table but the audit trail's own,
    the orgs, the users and their second factors."""
    snapshot = {
        "orgs": list(Org.objects.order_by("id").values()),
        "users": list(get_user_model().objects.order_by("id").values("id", "email", "password", "is_active")),
        "factors": list(TOTPDevice.objects.order_by("id").values()) + list(StaticDevice.objects.order_by("id").values()),
    }
    with org_context(world.org.id):
        for model in org_owned_models():
            if model._meta.app_label != "audit":
                snapshot[model._meta.label] = list(model.dangerously_unscoped.order_by("pk").values())
    return snapshot


def events(org_id) -> list[tuple]:
    with org_context(org_id):
        return list(AuditEvent.objects.order_by("seq").values_list("seq", "action", "request_id"))


def send(world: World, case: Case, method: str, *, path: str, body: dict | None, request_id: str, bad: bool = False):
    client = world.member_client if bad and case.bad_as_member else world.client
    if case.master_key:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER_KEY}")
    return getattr(client, method.lower())(path, body, format="json", HTTP_X_REQUEST_ID=request_id)


def test_every_mutating_endpoint_has_a_case():
    missing = sorted(mutating_endpoints() - set(CASES))
    stale = sorted(set(CASES) - mutating_endpoints())
    assert not missing, f"add a case to CASES for {missing}: each mutating endpoint must be shown to audit itself"
    assert not stale, f"these endpoints are gone: remove their cases {stale}"


@pytest.mark.parametrize("endpoint", sorted(CASES), ids=lambda endpoint: f"{endpoint[1]} {endpoint[0]}")
def test_a_mutating_endpoint_audits_itself_in_the_same_transaction(world, monkeypatch, endpoint):
    name, method = endpoint
    case = CASES[endpoint](world)

    # Fails: nothing changes, nothing is recorded.
    before, trail = state(world), events(world.org.id)
    failed = send(world, case, method, path=case.bad_path or case.path, body=case.bad_body, request_id="req-bad", bad=True)
    assert 400 <= failed.status_code < 500, (failed.status_code, failed.content)
    assert state(world) == before and events(world.org.id) == trail

    # The audit event cannot be written: the change is rolled back with it.
    def refuse(event):
        raise RuntimeError("audit write refused")

    with monkeypatch.context() as patched:
        patched.setattr("audit.services._event_insert", refuse)
        with pytest.raises(RuntimeError, match="audit write refused"):
            send(world, case, method, path=case.path, body=case.body, request_id="req-refused")
    assert state(world) == before and events(world.org.id) == trail

    # Succeeds: at least one event with this request's id.
    request_id = f"req-{uuid.uuid4().hex}"
    response = send(world, case, method, path=case.path, body=case.body, request_id=request_id)
    assert response.status_code in (200, 201, 204), (response.status_code, response.content)
    assert response["X-Request-Id"] == request_id
    event_org = case.event_org(response) if case.event_org else world.org.id
    assert [action for _, action, rid in events(event_org) if rid == request_id], f"{method} {name} recorded no event"
    assert state(world) != before
