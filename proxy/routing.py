"""An org's aliases and their deployment chains, as the proxy needs them, cached per process."""
import dataclasses
import decimal
import random
import uuid

from keys.models import AliasRoute, ProviderKind
from keys.services import credential_api_key
from proxy.cache import GenerationCache
from tenants.context import org_context
from tenants.models import Org

ANTHROPIC_KINDS = frozenset({ProviderKind.ANTHROPIC})
OPENAI_KINDS = frozenset({ProviderKind.OPENAI, ProviderKind.AZURE_OPENAI, ProviderKind.OPENAI_COMPATIBLE})
MAX_CACHED_ORGS = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    deployment_id: str
    deployment_name: str
    provider_kind: str
    base_url: str
    upstream_model: str
    api_version: str
    api_key: str | None
    region: str
    hipaa_eligible: bool
    timeout_seconds: float
    price_input_per_mtok: decimal.Decimal | None
    price_output_per_mtok: decimal.Decimal | None
    price_embedding_per_mtok: decimal.Decimal | None
    max_output_tokens: int | None
    position: int
    weight: int

    @property
    def speaks_anthropic(self) -> bool:
        return self.provider_kind in ANTHROPIC_KINDS


@dataclasses.dataclass(frozen=True, slots=True)
class OrgRouting:
    org_id: uuid.UUID
    org_slug: str
    data_region: str
    logging_level: str
    aliases: dict[str, tuple[Route, ...]]


_routings = GenerationCache(max_entries=MAX_CACHED_ORGS)


def _routing_load(org_id: uuid.UUID) -> OrgRouting:
    aliases: dict[str, list[Route]] = {}
    with org_context(org_id):
        org = Org.objects.get(id=org_id)
        routes = AliasRoute.objects.select_related("alias", "deployment__credential").order_by("position", "id")
        for alias_route in routes:
            deployment = alias_route.deployment
            aliases.setdefault(alias_route.alias.name, []).append(
                Route(
                    deployment_id=str(deployment.id), deployment_name=deployment.name,
                    provider_kind=deployment.provider_kind, base_url=deployment.base_url.rstrip("/"),
                    upstream_model=deployment.upstream_model, api_version=deployment.api_version,
                    api_key=credential_api_key(deployment.credential) if deployment.credential else None,
                    region=deployment.region, hipaa_eligible=deployment.hipaa_eligible,
                    timeout_seconds=deployment.timeout_seconds,
                    price_input_per_mtok=deployment.price_input_per_mtok,
                    price_output_per_mtok=deployment.price_output_per_mtok,
                    price_embedding_per_mtok=deployment.price_embedding_per_mtok,
                    max_output_tokens=deployment.max_output_tokens,
                    position=alias_route.position, weight=alias_route.weight,
                )
            )
    return OrgRouting(
        org_id=org.id, org_slug=org.slug, data_region=org.data_region, logging_level=org.logging_level,
        aliases={name: tuple(chain) for name, chain in aliases.items()},
    )


def org_routing(org_id: uuid.UUID, *, generation: int) -> OrgRouting:
    return _routings.get(org_id, generation, _routing_load)


def org_routing_guess(org_id: uuid.UUID) -> OrgRouting | None:
    return _routings.peek(org_id)


def routes_in_attempt_order(chain: tuple[Route, ...]) -> list[Route]:
    """Positions in order (fallbacks); within one position, a weighted random order (load balancing)."""
    ordered: list[Route] = []
    index = 0
    while index < len(chain):
        group = [route for route in chain[index:] if route.position == chain[index].position]
        index += len(group)
        while len(group) > 1:
            pick = random.choices(range(len(group)), weights=[route.weight for route in group])[0]
            ordered.append(group.pop(pick))
        ordered.extend(group)
    return ordered
