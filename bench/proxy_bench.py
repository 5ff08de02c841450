"""Gateway overhead benchmark: the same load straight to the mock provider and through
Gatehouse, in one run on one machine.

    make bench            (or: .venv/bin/python -m bench.proxy_bench [--quick])

Starts the mock provider and the gateway exactly as `make web` runs it (gunicorn, gevent
workers), wires a `bench` org to the mock through the services, then measures
non-streamed and streamed (20-chunk) chat completions at concurrency 1, 32 and 256,
the gateway's CPU time per request (CPU seconds of all gateway processes / requests
served: stable on a noisy machine, unlike requests/s), and 1,000 concurrent streams
against a provider that takes 2 s each, with the gateway's peak memory.
Every hot-path feature that exists is on: key auth, model check, routing, metrics.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import django
import psutil
import requests

BASE_DIR = Path(__file__).resolve().parent.parent
MOCK_PORT, GATEWAY_PORT = 18401, 18400
USER = [{"role": "user", "content": "Write one short sentence about gateways."}]


def wire_bench_org() -> str:
    """Creates (or refreshes) the bench org and returns a fresh virtual key."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["GATEHOUSE_UPSTREAM_ALLOWLIST"] = "127.0.0.1/32"
    django.setup()
    from audit.actors import Actor
    from keys import selectors as key_selectors
    from keys import services as key_services
    from tenants.context import org_context
    from tenants.models import Org, Team
    from tenants.services import org_create, team_create

    actor = Actor.system("bench.proxy_bench")
    org = Org.objects.filter(slug="bench").first()
    if org is None:
        org, _ = org_create(slug="bench", name="Bench", data_region="us", owner_email="bench@bench.example", actor=actor)
    with org_context(org.id):
        team = Team.objects.filter(org=org, slug="bench").first() or team_create(org=org, slug="bench", name="Bench", actor=actor)
        existing = {d.name for d in key_selectors.deployment_list(org=org)}
        for name, model in (("mock-fast", "mock-gpt"), ("mock-slow", "mock-slow-2000")):
            if name not in existing:
                key_services.deployment_create(
                    org=org, actor=actor, name=name, provider_kind="openai_compatible",
                    base_url=f"http://127.0.0.1:{MOCK_PORT}/v1", upstream_model=model,
                    price_input_per_mtok=Decimal("0.15"), price_output_per_mtok=Decimal("0.6"), timeout_seconds=30,
                )
        aliases = key_selectors.alias_names(org=org)
        for alias, deployment in (("bench-gpt", "mock-fast"), ("bench-slow", "mock-slow")):
            if alias not in aliases:
                key_services.alias_create(org=org, name=alias, routes=[{"deployment": deployment}], actor=actor)
        _, secret = key_services.virtual_key_create(
            org=org, team=team, name=f"bench {time.strftime('%H:%M:%S')}", allowed_aliases=["bench-gpt", "bench-slow"],
            expires_at=None, metadata={}, actor=actor)
    return secret


def start(command: list[str], env: dict, ready_url: str) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(ready_url, timeout=1)
            return process
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[0]} did not start")


def mock_and_gateway_start(env: dict, *, workers: int, mock_port: int, gateway_port: int):
    """The mock provider and a gunicorn gateway as `make web` runs it, both answering."""
    mock = start([sys.executable, "-m", "tests.mock_provider.server", "--port", str(mock_port)], env,
                 f"http://127.0.0.1:{mock_port}/v1/models")
    gateway = start(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--worker-class", "gevent", "--workers", str(workers),
         "--worker-connections", "2000", "--bind", f"127.0.0.1:{gateway_port}", "--keep-alive", "75"],
        env, f"http://127.0.0.1:{gateway_port}/healthz",
    )
    return mock, gateway


def gateway_processes(master: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(master.pid)
    return [parent, *parent.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def load(url: str, body: dict, headers: dict, concurrency: int, total: int, stream: bool):
    from bench.loadgen import run_load_sync

    return run_load_sync(url, json.dumps(body).encode(), headers, concurrency, total_requests=total, stream=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2, one per core)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0

    secret = wire_bench_org()
    env = {**os.environ, "GATEHOUSE_UPSTREAM_ALLOWLIST": "127.0.0.1/32", "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    mock, gateway = mock_and_gateway_start(env, workers=args.workers, mock_port=MOCK_PORT, gateway_port=GATEWAY_PORT)
    direct = f"http://127.0.0.1:{MOCK_PORT}/v1/chat/completions"
    through = f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    plain = {"Authorization": "Bearer direct", "Content-Type": "application/json"}
    results = {"workers": args.workers, "cores": os.cpu_count(), "runs": []}
    try:
        processes = gateway_processes(gateway)
        load(through, {"model": "bench-gpt", "messages": USER}, auth, 8, 200, False)  # warm caches and pools
        for stream in (False, True):
            for concurrency, total in ((1, 500), (32, 6000), (256, 6000)):
                total = max(50, int(total * scale))
                body = {"messages": USER, "stream": stream}
                straight = load(direct, {**body, "model": "mock-gpt"}, plain, concurrency, total, stream)
                cpu_before = cpu_seconds(processes)
                gated = load(through, {**body, "model": "bench-gpt"}, auth, concurrency, total, stream)
                cpu_used = cpu_seconds(processes) - cpu_before
                results["runs"].append({
                    "stream": stream, "concurrency": concurrency, "requests": total,
                    "direct": straight.summary(), "gateway": gated.summary(),
                    "gateway_cpu_ms_per_request": round(1000 * cpu_used / max(1, gated.requests), 3),
                    "added_p50_ms": round(gated.latency_ms["p50"] - straight.latency_ms["p50"], 3),
                    "added_ttfb_p50_ms": round(gated.ttfb_ms["p50"] - straight.ttfb_ms["p50"], 3),
                })
                print(json.dumps(results["runs"][-1]), flush=True)

        idle_rss = rss_bytes(processes)
        peak = {"rss": idle_rss}
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak["rss"] = max(peak["rss"], rss_bytes(processes))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        many = max(100, int(1000 * scale))
        slow = load(through, {"model": "bench-slow", "messages": USER, "stream": True}, auth, many, many, True)
        sampling.set()
        sampler.join()
        results["slow_streams"] = {
            "concurrent": many, "provider_seconds": 2, "summary": slow.summary(),
            "gateway_rss_idle_mib": round(idle_rss / 2**20, 1), "gateway_rss_peak_mib": round(peak["rss"] / 2**20, 1),
        }
        print(json.dumps(results["slow_streams"]), flush=True)
    finally:
        gateway.terminate()
        mock.terminate()
        gateway.wait(timeout=30)
        mock.wait(timeout=30)
    out = BASE_DIR / ".data" / "bench-proxy.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out.relative_to(BASE_DIR)}")


if __name__ == "__main__":
    main()
