"""Compliance-aware routing: which deployments of an alias may serve a request, and the record of why.

A PHI request (a PHI detector fired, or its team or key handles PHI) goes only to
`hipaa_eligible` deployments; an org whose data region is the EU only to deployments in the
EU. Both rules filter the whole chain before anything is tried, so fallbacks obey them too.
When nothing is left the request is refused: it is never sent somewhere non-compliant.
"""
import dataclasses

from proxy.errors import ProxyError
from proxy.routing import Route
from tenants.models import DataRegion

NOT_HIPAA_ELIGIBLE = "not_hipaa_eligible"
OUTSIDE_DATA_REGION = "outside_data_region"
COOLING_DOWN = "cooling_down"


def route_exclusion_reason(route: Route, *, phi: bool, data_region: str) -> str | None:
    if data_region == DataRegion.EU and route.region != DataRegion.EU:
        return OUTSIDE_DATA_REGION
    if phi and not route.hipaa_eligible:
        return NOT_HIPAA_ELIGIBLE
    return None


def phi_changes_routing(chain: tuple[Route, ...]) -> bool:
    """Whether detecting PHI could change where this alias's requests go (else PHI detectors need not run)."""
    return any(not route.hipaa_eligible for route in chain)


@dataclasses.dataclass(slots=True)
class RoutingDecision:
    phi: bool
    region: str
    compliant: list[Route] = dataclasses.field(default_factory=list)
    excluded: list[dict] = dataclasses.field(default_factory=list)

    def exclude(self, route: Route, reason: str) -> None:
        self.excluded.append({"deployment": route.deployment_name, "reason": reason})

    def record(self, *, cooling: set[str], chosen: Route | None) -> dict:
        """For the request log: deployment names and reasons only."""
        return {
            "phi": self.phi,
            "region": self.region,
            "eligible": [route.deployment_name for route in self.compliant if route.deployment_id not in cooling],
            "excluded": [*self.excluded, *({"deployment": route.deployment_name, "reason": COOLING_DOWN}
                                           for route in self.compliant if route.deployment_id in cooling)],
            "chosen": chosen.deployment_name if chosen else None,
        }


def compliant_routes(candidates: list[Route], *, phi: bool, data_region: str) -> tuple[list[Route], RoutingDecision]:
    decision = RoutingDecision(phi=phi, region=data_region)
    compliant = decision.compliant
    for route in candidates:
        reason = route_exclusion_reason(route, phi=phi, data_region=data_region)
        if reason is None:
            compliant.append(route)
        else:
            decision.exclude(route, reason)
    return compliant, decision


def no_compliant_deployment(alias: str, decision: RoutingDecision) -> ProxyError:
    reasons = {exclusion["reason"] for exclusion in decision.excluded}
    rules = []
    if NOT_HIPAA_ELIGIBLE in reasons:
        rules.append("it is classified as PHI and may only go to HIPAA-eligible deployments")
    if OUTSIDE_DATA_REGION in reasons:
        rules.append("the org's data must stay in the EU region")
    return ProxyError(
        403, f"The model '{alias}' has no deployment this request may be sent to: {'; '.join(rules)}. "
             "It was not sent anywhere.",
        code="no_compliant_deployment", param="model",
    )
