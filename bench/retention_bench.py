"""Request-log retention at scale: expiring many rows must not lock the table or stall the proxy.

    .venv/bin/python -m bench.retention_bench [--rows 10000000] [--expire 1000000]

Fills a `retention-bench` org with --rows request-log rows (the oldest --expire of them past
the org's retention), then runs the retention service while (a) a writer inserts single rows
into the same table, as the proxy's log writer does, and (b) the gateway serves chat
completions; reports their latencies before and during the expiry, the expiry's own time,
and the plan of one delete batch (it must be an index scan, not a sequential scan).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["GATEHOUSE_UPSTREAM_ALLOWLIST"] = "127.0.0.1/32"
django.setup()

from django.db import connection  # noqa: E402

from audit.actors import Actor  # noqa: E402
from bench.loadgen import run_load_sync  # noqa: E402
from bench.proxy_bench import GATEWAY_PORT, MOCK_PORT, start, wire_bench_org  # noqa: E402
from requestlogs import services  # noqa: E402
from requestlogs.models import RequestLog  # noqa: E402
from tenants.context import org_context  # noqa: E402
from tenants.models import Org  # noqa: E402
from tenants.services import org_create  # noqa: E402

ACTOR = Actor.system("bench.retention_bench")
FILL_CHUNK = 500_000


def bench_org() -> Org:
    org = Org.objects.filter(slug="retention-bench").first()
    if org is None:
        org, _ = org_create(slug="retention-bench", name="Retention bench", data_region="us",
                            owner_email="retention@bench.example", actor=ACTOR)
    return org


def fill(org: Org, rows: int, expire: int) -> None:
    """Rows spread over the last 29 days, plus `expire` rows 31-60 days old (retention is 30 days)."""
    with org_context(org.id):
        RequestLog.objects.all().delete()
    for start_row in range(0, rows, FILL_CHUNK):
        count = min(FILL_CHUNK, rows - start_row)
        with org_context(org.id), connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO requestlogs_requestlog
                  (id, org_id, created_at, request_id, key_last_four, end_user, endpoint, alias, deployment,
                   upstream_model, provider_kind, status, error_code, stream, prompt_tokens, completion_tokens,
                   cost_usd, latency_ms, attempts, guardrail, logging_level)
                SELECT gen_random_uuid(), %s,
                       CASE WHEN n < %s THEN now() - interval '31 days' - (n %% 2592000) * interval '1 second'
                            ELSE now() - (n %% 2505600) * interval '1 second' END,
                       md5(n::text), 'abcd', '', 'chat', 'gpt', 'd', 'm', 'openai', 200, '', false, 20, 30,
                       0.0001, 100, 1, '{}', 'metadata'
                FROM generate_series(%s, %s) AS n
                """,
                [org.id, expire, start_row, start_row + count - 1],
            )
        print(f"filled {start_row + count:,} / {rows:,}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE requestlogs_requestlog")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}


def insert_latencies(org: Org, stop: threading.Event) -> list[float]:
    """What the proxy's log writer does: small inserts into the same table."""
    latencies = []
    while not stop.is_set():
        began = time.perf_counter()
        with org_context(org.id):
            RequestLog.objects.create(org=org, request_id=uuid.uuid4().hex, endpoint="chat", status=200)
        latencies.append(time.perf_counter() - began)
        time.sleep(0.01)
    connection.close()
    return latencies


def delete_batch_plan(org: Org) -> str:
    cutoff_sql = "now() - interval '30 days'"
    with org_context(org.id), connection.cursor() as cursor:
        cursor.execute(
            f"EXPLAIN DELETE FROM requestlogs_requestlog WHERE id IN (SELECT id FROM requestlogs_requestlog "
            f"WHERE org_id = %s AND created_at < {cutoff_sql} ORDER BY created_at LIMIT {services.EXPIRY_BATCH_ROWS})",
            [org.id],
        )
        return "\n".join(row[0] for row in cursor.fetchall())


def proxy_latencies(secret: str, stop: threading.Event) -> list[float]:
    """Chat completions through the gateway at concurrency 8, in one-second rounds until stopped."""
    body = json.dumps({"model": "bench-gpt", "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    latencies = []
    while not stop.is_set():
        result = run_load_sync(f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions", body, headers, 8,
                               duration_seconds=1.0)
        latencies += [record.latency for record in result.records if record.error is None]
    return latencies


def measure(org: Org, secret: str, *, expire: bool) -> dict:
    """Log inserts and proxy latency for 5 s (expire=False) or for the duration of the expiry run."""
    stop = threading.Event()
    inserts: list[float] = []
    proxied: list[float] = []
    threads = [threading.Thread(target=lambda: inserts.extend(insert_latencies(org, stop))),
               threading.Thread(target=lambda: proxied.extend(proxy_latencies(secret, stop)))]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    result: dict = {}
    if expire:
        result["expired"] = services.request_logs_expire(org=org, actor=ACTOR)
        result["expiry_seconds"] = round(time.perf_counter() - began, 2)
    else:
        time.sleep(5)
    stop.set()
    for thread in threads:
        thread.join()
    result["log_insert_latency"] = percentiles(inserts)
    result["proxy_latency"] = percentiles(proxied)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--expire", type=int, default=100_000)
    parser.add_argument("--skip-fill", action="store_true", help="reuse the rows of a previous run")
    args = parser.parse_args()
    org = bench_org()
    if not args.skip_fill:
        began = time.perf_counter()
        fill(org, args.rows, args.expire)
        print(f"fill took {time.perf_counter() - began:.0f} s", flush=True)
    secret = wire_bench_org()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()}
    mock = start([sys.executable, "-m", "tests.mock_provider.server", "--port", str(MOCK_PORT)], env,
                 f"http://127.0.0.1:{MOCK_PORT}/v1/models")
    gateway = start([sys.executable, "-m", "gunicorn", "config.wsgi", "--worker-class", "gevent", "--workers", "2",
                     "--bind", f"127.0.0.1:{GATEWAY_PORT}"], env, f"http://127.0.0.1:{GATEWAY_PORT}/healthz")
    try:
        report = {
            "rows": args.rows, "expire": args.expire, "batch_rows": services.EXPIRY_BATCH_ROWS,
            "delete_batch_plan": delete_batch_plan(org),
            "before": measure(org, secret, expire=False),
            "during": measure(org, secret, expire=True),
        }
    finally:
        gateway.terminate()
        mock.terminate()
        gateway.wait()
        mock.wait()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
