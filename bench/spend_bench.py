"""What budget checks cost on the hot path: the same load through the gateway for a key with no
budget or rate limit, and for a key under four budgets (key, team, org, end user) and two rate
limits (key and team: requests and tokens per minute, concurrency), in one run on one machine.

    .venv/bin/python -m bench.spend_bench [--quick]

Runs against a database of its own (`<database>_spend_bench`, recreated and migrated), the mock
provider and the gateway as `make web` runs it. Reports p50/p99 latency, the p50 added by the
budget checks, and the gateway's CPU time per request (CPU seconds of every gateway process /
requests served), at concurrency 1 and 32, non-streamed.
"""
import argparse
import json
import os
import tempfile
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

from bench.proxy_bench import BASE_DIR, USER, cpu_seconds, gateway_processes, load, mock_and_gateway_start

MOCK_PORT, GATEWAY_PORT = 18411, 18410
BIG = Decimal(1_000_000)


def _database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def database_prepare() -> dict:
    """A fresh, migrated database for the bench; returns the environment that points at it."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["GATEHOUSE_UPSTREAM_ALLOWLIST"] = "127.0.0.1/32"
    import django
    from django.conf import settings

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from ops import services as ops_services

    name = settings.DATABASES["default"]["NAME"] + "_spend_bench"
    env = {"DATABASE_URL": _database_url(settings.DATABASE_URL, name),
           "OWNER_DATABASE_URL": _database_url(settings.OWNER_DATABASE_URL, name)}
    ops_services.database_prepare(admin_url=settings.ADMIN_DATABASE_URL, app_url=env["DATABASE_URL"],
                                  owner_url=env["OWNER_DATABASE_URL"], database=name, recreate=True)
    for alias in ("default", "owner"):
        connections[alias].close()
        settings.DATABASES[alias]["NAME"] = name
        connections[alias].settings_dict["NAME"] = name
    call_command("migrate", database="owner", verbosity=0, interactive=False)
    return env


def wire_orgs() -> tuple[str, str]:
    """Two orgs on the mock: one without budgets, one whose key is under four budgets and two rate limits."""
    from audit.actors import Actor
    from keys import services as key_services
    from spend import services as spend_services
    from tenants.context import org_context
    from tenants.services import org_create, team_create

    actor = Actor.system("bench.spend_bench")
    secrets = []
    for slug, budgeted in (("plain", False), ("budgeted", True)):
        org, _ = org_create(slug=slug, name=slug.title(), data_region="us", owner_email=f"{slug}@bench.example",
                            actor=actor)
        with org_context(org.id):
            team = team_create(org=org, slug="bench", name="Bench", actor=actor)
            deployment = key_services.deployment_create(
                org=org, actor=actor, name="mock-fast", provider_kind="openai_compatible",
                base_url=f"http://127.0.0.1:{MOCK_PORT}/v1", upstream_model="mock-gpt",
                price_input_per_mtok=Decimal("0.15"), price_output_per_mtok=Decimal("0.6"), timeout_seconds=30)
            key_services.alias_create(org=org, name="bench-gpt", routes=[{"deployment": deployment}], actor=actor)
            key, secret = key_services.virtual_key_create(org=org, team=team, name="bench", allowed_aliases=["*"],
                                                          expires_at=None, metadata={}, actor=actor)
            if budgeted:
                for scope, target in (("key", {"key": key}), ("team", {"team": team}), ("org", {}), ("end_user", {})):
                    spend_services.budget_create(org=org, actor=actor, scope=scope, period="monthly", amount_usd=BIG,
                                                 soft_limit_usd=BIG - 1, **target)
                for scope, target in (("key", {"key": key}), ("team", {"team": team})):
                    spend_services.rate_limit_create(org=org, actor=actor, scope=scope, requests_per_minute=10**9,
                                                     tokens_per_minute=10**9, max_concurrent=10**6, **target)
        secrets.append(secret)
    return secrets[0], secrets[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0

    database_env = database_prepare()
    plain_secret, budgeted_secret = wire_orgs()
    env = {**os.environ, **database_env, "GATEHOUSE_UPSTREAM_ALLOWLIST": "127.0.0.1/32",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    mock, gateway = mock_and_gateway_start(env, workers=args.workers, mock_port=MOCK_PORT, gateway_port=GATEWAY_PORT)
    url = f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions"
    body = {"model": "bench-gpt", "messages": USER, "max_tokens": 64, "user": "end-user-1"}
    results = {"workers": args.workers, "cores": os.cpu_count(), "runs": []}
    try:
        processes = gateway_processes(gateway)
        for secret in (plain_secret, budgeted_secret):  # warm caches, pools and the budget counters
            load(url, body, {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}, 8, 200, False)
        for concurrency, total in ((1, 1000), (32, 6000)):
            total = max(100, int(total * scale))
            measured = {}
            for label, secret in (("no_budgets", plain_secret), ("four_budgets_two_limits", budgeted_secret)):
                headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
                cpu_before = cpu_seconds(processes)
                result = load(url, body, headers, concurrency, total, False)
                cpu_used = cpu_seconds(processes) - cpu_before
                measured[label] = {**result.summary(),
                                   "cpu_ms_per_request": round(1000 * cpu_used / max(1, result.requests), 3)}
            run = {
                "concurrency": concurrency, "requests": total, **measured,
                "added_p50_ms": round(measured["four_budgets_two_limits"]["latency_ms"]["p50"]
                                      - measured["no_budgets"]["latency_ms"]["p50"], 3),
                "added_cpu_ms_per_request": round(measured["four_budgets_two_limits"]["cpu_ms_per_request"]
                                                  - measured["no_budgets"]["cpu_ms_per_request"], 3),
            }
            results["runs"].append(run)
            print(json.dumps({name: run[name] for name in ("concurrency", "requests", "added_p50_ms",
                                                           "added_cpu_ms_per_request")}), flush=True)
    finally:
        gateway.terminate()
        mock.terminate()
        gateway.wait(timeout=30)
        mock.wait(timeout=30)
    out = BASE_DIR / ".data" / "bench-spend.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(BASE_DIR)}")


if __name__ == "__main__":
    main()
