"""Prometheus metrics of the proxy, served at /metrics to scrapers only.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (make web does) so
that every worker's numbers are added up."""
import functools
import ipaddress
import os
import time

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

LABELS = ("org", "alias", "deployment", "status")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("gatehouse_requests_total", "Proxied requests", LABELS)
ERRORS = Counter("gatehouse_errors_total", "Proxied requests that ended in an error", ("org", "alias", "code"))
LATENCY = Histogram("gatehouse_request_seconds", "Time from request to last byte", LABELS, buckets=LATENCY_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram(
    "gatehouse_time_to_first_token_seconds", "Time from request to the first streamed event",
    ("org", "alias", "deployment"), buckets=LATENCY_BUCKETS,
)
TOKENS = Counter("gatehouse_tokens_total", "Tokens processed", ("org", "alias", "deployment", "kind"))
COST = Counter("gatehouse_cost_usd_total", "Cost at the deployment's prices, in USD", ("org", "alias", "deployment"))


@functools.lru_cache(maxsize=4096)
def _series(org: str, alias: str, deployment: str, status: str):
    # prometheus_client's labels() costs more than the increment; the children are stable, so keep them.
    return (
        REQUESTS.labels(org, alias, deployment, status),
        LATENCY.labels(org, alias, deployment, status),
        TOKENS.labels(org, alias, deployment, "prompt"),
        TOKENS.labels(org, alias, deployment, "completion"),
        COST.labels(org, alias, deployment),
    )


def request_observe(*, org: str, alias: str, deployment: str, status: int, started: float,
                    prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
    requests, latency, prompt, completion, cost = _series(org, alias, deployment, str(status))
    requests.inc()
    latency.observe(time.monotonic() - started)
    if prompt_tokens:
        prompt.inc(prompt_tokens)
    if completion_tokens:
        completion.inc(completion_tokens)
    if cost_usd:
        cost.inc(cost_usd)


def _scraper_allowed(request) -> bool:
    token = settings.GATEHOUSE_METRICS_TOKEN
    authorization = request.META.get("HTTP_AUTHORIZATION", "")
    if authorization:
        return bool(token) and authorization == f"Bearer {token}"
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in settings.GATEHOUSE_METRICS_ALLOW)


def metrics_view(request):
    if not _scraper_allowed(request):
        return HttpResponse("Forbidden: metrics are served to scrapers only.\n", status=403, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
