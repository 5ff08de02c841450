"""Compliance-aware routing by the live gateway: PHI only to HIPAA-eligible deployments (fail
closed), EU orgs only to EU deployments (fallbacks included), the team's approved-model catalogue,
and the routing decision in the request log."""
from decimal import Decimal

import openai
import pytest

from guardrails import services as guardrail_services
from keys import selectors as key_selectors
from keys import services as key_services
from tenants.context import org_context
from tenants.services import org_create, team_create
from tests.conftest import SYSTEM, unique_slug
from tests.proxy.conftest import PROVIDER_KEY
from tests.requestlogs.test_logging import logs_for

PHI_PROMPT = [{"role": "user", "content": "Patient DOB: 1980-04-12, please summarise the visit."}]
PLAIN_PROMPT = [{"role": "user", "content": "Say hello"}]
PRICES = {"price_input_per_mtok": Decimal(1), "price_output_per_mtok": Decimal(2)}


def client(gateway_url, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0, timeout=30)


def deployment_add(org, provider, name: str, upstream_model: str, **options):
    with org_context(org.id):
        credential = key_selectors.credential_get_by_ref(org=org, ref="openai")
        return key_services.deployment_create(
            org=org, actor=SYSTEM, name=name, provider_kind="openai", base_url=provider.base_url + "/v1",
            upstream_model=upstream_model, credential=credential, **PRICES, **options,
        )


def alias_add(org, name: str, chain: list[tuple[str, int]]) -> None:
    with org_context(org.id):
        key_services.alias_create(org=org, name=name, actor=SYSTEM,
                                  routes=[{"deployment": deployment, "position": position} for deployment, position in chain])


@pytest.fixture
def hipaa(wired, provider):
    """`care`: a non-eligible deployment first, a HIPAA-eligible fallback second."""
    deployment_add(wired.org, provider, "hipaa-ok", "mock-hipaa", hipaa_eligible=True)
    alias_add(wired.org, "care", [("openai-ok", 0), ("hipaa-ok", 1)])
    return wired


def test_phi_goes_only_to_a_hipaa_eligible_deployment(gateway_url, hipaa):
    oa = client(gateway_url, hipaa.key)
    plain = oa.chat.completions.with_raw_response.create(model="care", messages=PLAIN_PROMPT)
    assert plain.headers["x-gatehouse-deployment"] == "openai-ok"
    phi = oa.chat.completions.with_raw_response.create(model="care", messages=PHI_PROMPT)
    assert phi.headers["x-gatehouse-deployment"] == "hipaa-ok"
    row = logs_for(hipaa.org, phi.headers["x-request-id"])
    assert row.routing == {"phi": True, "region": "us", "eligible": ["hipaa-ok"], "chosen": "hipaa-ok",
                           "excluded": [{"deployment": "openai-ok", "reason": "not_hipaa_eligible"}]}
    assert row.guardrail["phi"] is True and row.guardrail["request"] == {"date_of_birth": 1}
    assert row.guardrail["actions"] == {"date_of_birth": "allow"}  # found and routed on, but not changed
    assert logs_for(hipaa.org, plain.headers["x-request-id"]).routing["excluded"] == []


def test_phi_is_refused_when_the_alias_has_no_eligible_deployment(gateway_url, hipaa, provider):
    reached = provider.stats()["requests"]
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(gateway_url, hipaa.key).chat.completions.create(model="gpt", messages=PHI_PROMPT)
    assert refused.value.body["code"] == "no_compliant_deployment"
    assert "HIPAA-eligible" in refused.value.body["message"] and "1980" not in refused.value.body["message"]
    assert provider.stats()["requests"] == reached  # fail closed: sent nowhere
    row = logs_for(hipaa.org, refused.value.response.headers["x-request-id"])
    assert row.status == 403 and row.routing["chosen"] is None
    assert row.routing["excluded"] == [{"deployment": "openai-ok", "reason": "not_hipaa_eligible"}]


def test_phi_redacted_by_policy_is_still_phi(gateway_url, hipaa, provider):
    with org_context(hipaa.org.id):
        guardrail_services.org_guardrail_policy_update(org=hipaa.org, actor=SYSTEM, actions={"date_of_birth": "redact"})
    raw = client(gateway_url, hipaa.key).chat.completions.with_raw_response.create(model="care", messages=PHI_PROMPT)
    assert raw.headers["x-gatehouse-deployment"] == "hipaa-ok"
    assert "1980-04-12" not in provider.stats()["last_body"]["messages"][0]["content"]


def test_a_team_or_key_marked_phi_routes_every_request_as_phi(gateway_url, hipaa):
    with org_context(hipaa.org.id):
        other_team = team_create(org=hipaa.org, slug="clinic", name="Clinic", actor=SYSTEM)
        clinic_key, clinic_secret = key_services.virtual_key_create(
            org=hipaa.org, team=other_team, name="clinic", allowed_aliases=["*"], expires_at=None, metadata={}, actor=SYSTEM)
        guardrail_services.team_guardrails_update(org=hipaa.org, team=other_team, actor=SYSTEM, handles_phi=True)
    oa = client(gateway_url, clinic_secret)
    assert oa.chat.completions.with_raw_response.create(model="care", messages=PLAIN_PROMPT).headers[
        "x-gatehouse-deployment"] == "hipaa-ok"
    with pytest.raises(openai.PermissionDeniedError, match="no deployment this request may be sent to"):
        oa.chat.completions.create(model="gpt", messages=PLAIN_PROMPT)
    # The other team's key is unaffected until the key itself is marked.
    app = client(gateway_url, hipaa.key)
    assert app.chat.completions.with_raw_response.create(model="care", messages=PLAIN_PROMPT).headers[
        "x-gatehouse-deployment"] == "openai-ok"
    with org_context(hipaa.org.id):
        key = key_selectors.virtual_key_get(org=hipaa.org, key_id=hipaa.key_id)
        guardrail_services.key_guardrails_update(org=hipaa.org, key=key, actor=SYSTEM, handles_phi=True)
    assert app.chat.completions.with_raw_response.create(model="care", messages=PLAIN_PROMPT).headers[
        "x-gatehouse-deployment"] == "hipaa-ok"


def test_the_teams_catalogue_narrows_what_its_keys_may_use(gateway_url, wired):
    with org_context(wired.org.id):
        guardrail_services.team_guardrails_update(org=wired.org, team=wired.team, actor=SYSTEM, approved_aliases=["gpt"])
    oa = client(gateway_url, wired.key)  # the key itself may use every alias
    assert oa.chat.completions.create(model="gpt", messages=PLAIN_PROMPT).choices
    with pytest.raises(openai.PermissionDeniedError) as refused:
        oa.chat.completions.create(model="claude", messages=PLAIN_PROMPT)
    assert refused.value.body["code"] == "model_not_allowed" and "catalogue" in refused.value.body["message"]
    assert [model.id for model in oa.models.list()] == ["gpt"]


@pytest.fixture
def eu_org(committed, provider, settings):
    """An EU org with a US deployment, an EU one and a failing EU one."""
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]
    org, _ = org_create(slug=unique_slug("eu"), name="EU", data_region="eu",
                        owner_email=f"{unique_slug('o')}@x.example", actor=SYSTEM)
    with org_context(org.id):
        team = team_create(org=org, slug="apps", name="Apps", actor=SYSTEM)
        key_services.credential_create(org=org, name="openai", provider_kind="openai", api_key=PROVIDER_KEY, actor=SYSTEM)
    deployment_add(org, provider, "us-ok", "mock-usregion", region="us")
    deployment_add(org, provider, "eu-ok", "mock-euregion", region="eu")
    deployment_add(org, provider, "eu-500", "mock-error-500", region="eu")
    alias_add(org, "mixed", [("us-ok", 0), ("eu-ok", 1)])
    alias_add(org, "us-only", [("us-ok", 0)])
    alias_add(org, "eu-failing", [("eu-500", 0), ("us-ok", 1)])
    with org_context(org.id):
        _, secret = key_services.virtual_key_create(org=org, team=team, name="app", allowed_aliases=["*"], expires_at=None,
                                                    metadata={}, actor=SYSTEM)
    return org, secret


def test_an_eu_org_is_routed_only_to_eu_deployments_fallbacks_included(gateway_url, eu_org, provider):
    org, secret = eu_org
    oa = client(gateway_url, secret)
    us_calls = provider.stats()["by_model"].get("mock-usregion", 0)
    raw = oa.chat.completions.with_raw_response.create(model="mixed", messages=PLAIN_PROMPT)
    assert raw.headers["x-gatehouse-deployment"] == "eu-ok"
    assert logs_for(org, raw.headers["x-request-id"]).routing == {
        "phi": False, "region": "eu", "eligible": ["eu-ok"], "chosen": "eu-ok",
        "excluded": [{"deployment": "us-ok", "reason": "outside_data_region"}]}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        oa.chat.completions.create(model="us-only", messages=PLAIN_PROMPT)
    assert refused.value.body["code"] == "no_compliant_deployment" and "EU" in refused.value.body["message"]
    with pytest.raises(openai.APIStatusError) as failed:  # the EU deployment fails: no fallback to the US one
        oa.chat.completions.create(model="eu-failing", messages=PLAIN_PROMPT)
    assert failed.value.status_code == 502
    assert provider.stats()["by_model"].get("mock-usregion", 0) == us_calls



def test_the_decision_records_cooling_deployments_and_the_request_log_api_shows_it(hipaa):
    from proxy.cache import gateway_state_read
    from proxy.compliance import compliant_routes
    from proxy.routing import org_routing
    from requestlogs.apis import RequestLogOutput
    from requestlogs.models import RequestLog

    generation, _ = gateway_state_read([])
    chain = org_routing(hipaa.org.id, generation=generation).aliases["care"]
    candidates, decision = compliant_routes(list(chain), phi=False, data_region="us")
    assert [route.deployment_name for route in candidates] == ["openai-ok", "hipaa-ok"]
    cooling = {str(hipaa.deployments["openai-ok"].id)}
    assert decision.record(cooling=cooling, chosen=candidates[1]) == {
        "phi": False, "region": "us", "eligible": ["hipaa-ok"], "chosen": "hipaa-ok",
        "excluded": [{"deployment": "openai-ok", "reason": "cooling_down"}]}
    assert RequestLogOutput(RequestLog(routing=decision.record(cooling=set(), chosen=None))).data["routing"]["chosen"] is None
