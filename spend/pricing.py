"""What a request costs, in integer micro-dollars (1e-6 USD), rounded up.

A price is in USD per million tokens, so tokens x price is exactly the cost in micro-dollars.
Rounding up (per request, never per token) keeps every cap conservative, and the same integer is
charged to the counters, written to the ledger and the request log, so they always agree.
"""
import decimal
import math

from django.conf import settings

from proxy.routing import Route


def route_unpriced(route: Route, endpoint: str) -> bool:
    if endpoint == "embeddings":
        return route.price_embedding_per_mtok is None
    return route.price_input_per_mtok is None or route.price_output_per_mtok is None


def cost_microusd(route: Route, endpoint: str, prompt_tokens: int, completion_tokens: int) -> int:
    if endpoint == "embeddings":
        cost = prompt_tokens * (route.price_embedding_per_mtok or decimal.Decimal(0))
    else:
        cost = (prompt_tokens * (route.price_input_per_mtok or decimal.Decimal(0))
                + completion_tokens * (route.price_output_per_mtok or decimal.Decimal(0)))
    return math.ceil(cost)


def max_output_tokens(route: Route, endpoint: str, body: dict, *, anthropic_client: bool) -> int:
    """The most output this route may produce for the request: what the client asked for, else the
    deployment's cap, else the limit the gateway accepts (a huge cap is reserved, never skipped)."""
    if endpoint == "embeddings":
        return 0
    requested = body.get("max_tokens") if anthropic_client else body.get("max_completion_tokens") or body.get("max_tokens")
    if requested:
        return int(requested)
    if route.speaks_anthropic:  # translated requests get this max_tokens (proxy.views._upstream_body)
        return route.max_output_tokens or settings.GATEHOUSE_DEFAULT_MAX_TOKENS
    return route.max_output_tokens or settings.GATEHOUSE_MAX_OUTPUT_TOKENS


def microusd_to_usd(amount: int) -> decimal.Decimal:
    return decimal.Decimal(amount).scaleb(-6)


def usd_to_microusd(amount: decimal.Decimal) -> int:
    return int((amount * 1_000_000).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))
