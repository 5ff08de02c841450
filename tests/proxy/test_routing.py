from collections import Counter

from proxy.routing import Route, routes_in_attempt_order


def route(name: str, position: int, weight: int = 1) -> Route:
    return Route(
        deployment_id=name, deployment_name=name, provider_kind="openai", base_url="http://x", upstream_model="m",
        api_version="", api_key=None, region="us", hipaa_eligible=False, timeout_seconds=10,
        price_input_per_mtok=None, price_output_per_mtok=None, price_embedding_per_mtok=None,
        max_output_tokens=None, position=position, weight=weight,
    )


def test_fallback_positions_keep_their_order():
    chain = (route("primary", 0), route("secondary", 1), route("last", 2))
    assert [r.deployment_name for r in routes_in_attempt_order(chain)] == ["primary", "secondary", "last"]


def test_weights_share_load_within_a_position_and_fallbacks_stay_last():
    chain = (route("heavy", 0, weight=3), route("light", 0, weight=1), route("fallback", 1))
    firsts = Counter()
    for _ in range(4000):
        order = [r.deployment_name for r in routes_in_attempt_order(chain)]
        assert sorted(order[:2]) == ["heavy", "light"] and order[2] == "fallback"
        firsts[order[0]] += 1
    assert 0.70 < firsts["heavy"] / 4000 < 0.80
