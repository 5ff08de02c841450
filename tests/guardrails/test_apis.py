"""The guardrails management API: policies, team and key compliance settings, custom detectors."""
import uuid

import pytest

from audit.models import AuditEvent
from keys import services as key_services
from tenants.context import org_context
from tenants.models import Team
from tests.conftest import SYSTEM
from tests.keys.test_apis import make_team_admin, team_of
from tests.keys.test_services import catalog_create, local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db


def key_of(org, team):
    with org_context(org.id):
        key, _ = key_services.virtual_key_create(org=org, team=team, name="app", allowed_aliases=["*"], expires_at=None,
                                                 metadata={}, actor=SYSTEM)
    return key


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *map(str, parts)]) + "/"


def audit_actions(org) -> list[str]:
    with org_context(org.id):
        return list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))


def test_org_policy_shows_defaults_and_accepts_changes(org_a, api_as):
    org, owner = org_a
    client = api_as(owner)
    initial = client.get(url(org, "guardrails", "policy")).json()
    assert initial["actions"] == {} and initial["effective_actions"]["secret"] == "redact"
    assert initial["effective_actions"]["prompt_injection"] == "flag" and initial["effective_actions"]["email"] == "allow"
    changed = client.patch(url(org, "guardrails", "policy"), {
        "actions": {"email": "redact", "us_ssn": "block"}, "medical_record_patterns": ["ZZ\\d{7}"],
    }, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["actions"] == {"email": "redact", "us_ssn": "block"}
    assert changed.json()["effective_actions"]["email"] == "redact"
    assert changed.json()["medical_record_patterns"] == ["ZZ\\d{7}"]
    assert "guardrail_policy.org_update" in audit_actions(org)


@pytest.mark.parametrize("body, named", [
    ({"actions": {"credit_score": "block"}}, "credit_score"),
    ({"actions": {"email": "explode"}}, "explode"),
    ({"actions": {"prompt_injection": "redact"}}, "prompt_injection"),
    ({"actions": "block everything"}, "actions"),
    ({"health_plan_patterns": ["(x+x+)+y"]}, "catastrophic backtracking"),
    ({"medical_record_patterns": ["MR[0-9"]}, "does not compile"),
    ({"mode": "strict"}, "mode"),
])
def test_bad_policy_input_is_a_400_naming_the_problem(org_a, api_as, body, named):
    org, owner = org_a
    response = api_as(owner).patch(url(org, "guardrails", "policy"), body, format="json")
    assert response.status_code == 400 and named in response.content.decode()
    assert "guardrail_policy.org_update" not in audit_actions(org)


def test_only_org_admins_change_policies_and_compliance_settings(org_a, add_member, api_as):
    org, owner = org_a
    team = team_of(org)
    key = key_of(org, team)
    lead = add_member(org, "member")
    make_team_admin(org, team, lead)
    client = api_as(lead)
    # A team admin may read, and may rename the team, but may not loosen what the org decided.
    assert client.get(url(org, "guardrails", "teams", team.id)).status_code == 200
    assert client.patch(url(org, "guardrails", "teams", team.id), {"handles_phi": False}, format="json").status_code == 403
    assert client.patch(url(org, "guardrails", "teams", team.id), {"approved_aliases": None}, format="json").status_code == 403
    assert client.patch(url(org, "guardrails", "keys", key.id), {"handles_phi": False}, format="json").status_code == 403
    assert client.patch(url(org, "guardrails", "policy"), {"actions": {}}, format="json").status_code == 403
    assert client.post(url(org, "guardrails", "detectors"), {"name": "x", "pattern": "x\\d"}, format="json").status_code == 403
    # The team endpoint of the tenants API does not take the compliance fields at all.
    refused = client.patch(url(org, "teams", team.id), {"handles_phi": False}, format="json")
    assert refused.status_code == 400 and "handles_phi" in refused.json()
    admin = add_member(org, "admin")
    assert api_as(admin).patch(url(org, "guardrails", "teams", team.id), {"handles_phi": True},
                               format="json").status_code == 200


def test_team_compliance_settings_and_override(org_a, api_as, local_upstreams):  # noqa: F811
    org, owner = org_a
    catalog_create(org)
    team = team_of(org)
    client = api_as(owner)
    response = client.patch(url(org, "guardrails", "teams", team.id), {
        "handles_phi": True, "approved_aliases": ["gpt-4o", "gpt-4o"], "actions": {"email": "block"},
    }, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["handles_phi"] is True and body["approved_aliases"] == ["gpt-4o"]
    assert body["actions"] == {"email": "block"} and body["effective_actions"]["email"] == "block"
    with org_context(org.id):
        stored = Team.objects.get(id=team.id)
    assert stored.handles_phi is True and stored.approved_aliases == ["gpt-4o"]
    unknown = client.patch(url(org, "guardrails", "teams", team.id), {"approved_aliases": ["nope"]}, format="json")
    assert unknown.status_code == 400 and "nope" in unknown.content.decode()
    cleared = client.patch(url(org, "guardrails", "teams", team.id), {"approved_aliases": None}, format="json")
    assert cleared.json()["approved_aliases"] is None
    assert {"team.compliance_update", "guardrail_policy.team_update"} <= set(audit_actions(org))


def test_key_override_and_phi_flag(org_a, api_as):
    org, owner = org_a
    team = team_of(org)
    key = key_of(org, team)
    client = api_as(owner)
    client.patch(url(org, "guardrails", "teams", team.id), {"actions": {"email": "redact"}}, format="json")
    response = client.patch(url(org, "guardrails", "keys", key.id), {"handles_phi": True, "actions": {"phone": "flag"}},
                            format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["handles_phi"] is True and body["team_handles_phi"] is False
    assert body["effective_actions"]["email"] == "redact" and body["effective_actions"]["phone"] == "flag"
    assert "virtual_key.compliance_update" in audit_actions(org)


def test_custom_detectors_crud_and_errors(org_a, api_as):
    org, owner = org_a
    client = api_as(owner)
    broken = client.post(url(org, "guardrails", "detectors"), {"name": "order-id", "pattern": "ORD-(\\d+"}, format="json")
    assert broken.status_code == 400 and "does not compile" in broken.json()["pattern"][0]
    slow = client.post(url(org, "guardrails", "detectors"), {"name": "order-id", "pattern": "(\\w+\\s?)+$"}, format="json")
    assert slow.status_code == 400 and "backtracking" in slow.json()["pattern"][0]
    detector = client.post(url(org, "guardrails", "detectors"), {"name": "order-id", "pattern": "ORD-\\d{6}"}, format="json")
    assert detector.status_code == 201 and detector.json()["category"] == "custom:order-id"
    duplicate = client.post(url(org, "guardrails", "detectors"), {"name": "order-id", "pattern": "X\\d"}, format="json")
    assert duplicate.status_code == 409
    detector_id = detector.json()["id"]
    assert client.patch(url(org, "guardrails", "policy"), {"actions": {"custom:order-id": "block"}},
                        format="json").status_code == 200
    updated = client.patch(url(org, "guardrails", "detectors", detector_id), {"pattern": "ORD-\\d{8}"}, format="json")
    assert updated.status_code == 200 and updated.json()["pattern"] == "ORD-\\d{8}"
    renamed = client.patch(url(org, "guardrails", "detectors", detector_id), {"name": "other"}, format="json")
    assert renamed.status_code == 400
    assert client.delete(url(org, "guardrails", "detectors", detector_id)).status_code == 204
    assert client.get(url(org, "guardrails", "policy")).json()["actions"] == {}
    assert client.get(url(org, "guardrails", "detectors", detector_id)).status_code == 404


def test_another_orgs_objects_are_not_found(org_a, org_b, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    team_b = team_of(b)
    key_b = key_of(b, team_b)
    client = api_as(owner_a)
    with org_context(b.id):
        from guardrails.services import custom_detector_create

        detector_b = custom_detector_create(org=b, name="secret-sauce", pattern="SAUCE-\\d+", actor=SYSTEM)
    assert client.get(url(a, "guardrails", "teams", team_b.id)).status_code == 404
    assert client.patch(url(a, "guardrails", "teams", team_b.id), {"handles_phi": True}, format="json").status_code == 404
    assert client.get(url(a, "guardrails", "keys", key_b.id)).status_code == 404
    assert client.get(url(a, "guardrails", "detectors", detector_b.id)).status_code == 404
    assert client.get(url(a, "guardrails", "detectors")).json()["results"] == []
    # Another org's detector is not a category of this org.
    refused = client.patch(url(a, "guardrails", "policy"), {"actions": {"custom:secret-sauce": "block"}}, format="json")
    assert refused.status_code == 400
    assert client.get(url(a, "guardrails", "teams", uuid.uuid4())).status_code == 404
    assert client.get(url(a, "guardrails", "teams", "not-a-uuid")).status_code == 404
