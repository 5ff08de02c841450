import datetime
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from requestlogs.models import RequestDailyUsage, RequestLog
from requestlogs.services import request_logs_expire
from requestlogs.writer import request_log_buffer
from tenants.context import org_context
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def flushed_by_the_test_only():
    """These tests flush the buffer themselves, inside their transaction."""
    request_log_buffer.background = False
    yield
    request_log_buffer.background = True


def log_row(org, *, age_days: float, text: bool = True, alias: str = "gpt", status: int = 200) -> dict:
    return {
        "org_id": org.id, "created_at": timezone.now() - datetime.timedelta(days=age_days),
        "request_id": uuid.uuid4().hex, "team_id": None, "key_id": None, "key_last_four": "abcd", "end_user": "",
        "client_ip": "10.0.0.1", "endpoint": "chat", "alias": alias, "deployment": "d", "upstream_model": "m",
        "provider_kind": "openai", "status": status, "error_code": "", "stream": False, "prompt_tokens": 10,
        "completion_tokens": 5, "cost_usd": 0.001, "latency_ms": 12, "ttft_ms": None, "attempts": 1, "guardrail": {},
        "logging_level": "full" if text else "metadata",
        "request_text": "prompt" if text else None, "response_text": "answer" if text else None,
    }


def write(rows) -> None:
    for row in rows:
        request_log_buffer.append(row)
    request_log_buffer.flush()


def test_expiry_deletes_old_rows_clears_old_text_and_keeps_aggregates(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    write([log_row(a, age_days=40), log_row(a, age_days=35), log_row(a, age_days=10), log_row(a, age_days=1),
           log_row(b, age_days=40)])
    result = request_logs_expire(org=a, actor=SYSTEM)
    assert result == {"rows_deleted": 2, "texts_cleared": 1}
    with org_context(a.id):
        left = list(RequestLog.objects.order_by("created_at"))
        assert [row.request_text for row in left] == [None, "prompt"]
        assert sum(u.requests for u in RequestDailyUsage.objects.all()) == 4
        assert AuditEvent.objects.filter(action="request_logs.expire").count() == 1
    with org_context(b.id):
        assert RequestLog.objects.count() == 1  # another org's retention is its own
    assert request_logs_expire(org=a, actor=SYSTEM) == {"rows_deleted": 0, "texts_cleared": 0}


def test_expiry_works_in_batches(org_a, monkeypatch):
    from requestlogs import services

    a, _ = org_a
    monkeypatch.setattr(services, "EXPIRY_BATCH_ROWS", 3)
    write([log_row(a, age_days=31 + i, text=False) for i in range(8)])
    assert request_logs_expire(org=a, actor=SYSTEM)["rows_deleted"] == 8


def test_list_filters_and_pagination(org_a, api_as):
    a, owner = org_a
    write([log_row(a, age_days=0.5, alias="gpt"), log_row(a, age_days=0.5, alias="claude", status=502),
           log_row(a, age_days=3, alias="gpt")])
    client = api_as(owner)
    url = f"/api/v1/orgs/{a.slug}/request-logs/"
    assert client.get(url).json()["count"] == 3
    assert client.get(url, {"alias": "claude"}).json()["results"][0]["status"] == 502
    assert client.get(url, {"status": 502}).json()["count"] == 1
    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    assert client.get(url, {"since": since}).json()["count"] == 2
    assert len(client.get(url, {"limit": 1}).json()["results"]) == 1
    usage = client.get(f"/api/v1/orgs/{a.slug}/usage/daily/").json()
    assert sum(row["requests"] for row in usage["results"]) == 3


@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"status": "ok"}, "status"),
        ({"status": 42}, "status"),
        ({"key_id": "not-a-uuid"}, "key_id"),
        ({"limit": 0}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_filters_are_400(org_a, api_as, params, field):
    a, owner = org_a
    response = api_as(owner).get(f"/api/v1/orgs/{a.slug}/request-logs/", params)
    assert response.status_code == 400 and field in response.json()


def test_another_orgs_logs_are_invisible(org_a, org_b, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    write([log_row(b, age_days=0.1)])
    assert api_as(owner_a).get(f"/api/v1/orgs/{a.slug}/request-logs/").json()["count"] == 0
    assert api_as(owner_a).get(f"/api/v1/orgs/{b.slug}/request-logs/").status_code == 404


def test_a_row_the_database_refuses_does_not_block_the_others(org_a):
    a, _ = org_a
    good, refused = log_row(a, age_days=0), log_row(a, age_days=0, status=-1)
    dropped = request_log_buffer.dropped
    request_log_buffer.append(good)
    request_log_buffer.append(refused)
    assert request_log_buffer.flush() == 1
    assert request_log_buffer.dropped == dropped + 1
    with org_context(a.id):
        assert list(RequestLog.objects.values_list("request_id", flat=True)) == [good["request_id"]]


def test_rows_wait_in_the_buffer_while_the_table_cannot_be_written(org_a, settings):
    """Another session holds the table locked: the write times out and the rows stay buffered."""
    import psycopg
    from django.db import connection

    a, _ = org_a
    row = log_row(a, age_days=0)
    database = settings.DATABASES["default"]["NAME"]
    admin_url = settings.ADMIN_DATABASE_URL.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(admin_url) as locker:
        locker.execute("LOCK TABLE requestlogs_requestlog IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '100ms'")
        request_log_buffer.append(row)
        assert request_log_buffer.flush() == 0
        locker.rollback()
    assert request_log_buffer.flush() == 1
    with org_context(a.id):
        assert RequestLog.objects.filter(request_id=row["request_id"]).exists()


def test_export_as_jsonl_and_parquet_is_audited(org_a, api_as, tmp_path):
    import io

    import orjson
    import pyarrow.parquet as pq
    from django.core.management import call_command

    a, owner = org_a
    rows = [log_row(a, age_days=0.2), log_row(a, age_days=0.1)]
    write(rows)
    client = api_as(owner)
    since = (timezone.now() - datetime.timedelta(days=1)).isoformat()
    url = f"/api/v1/orgs/{a.slug}/request-logs/export"
    jsonl = client.get(url, {"format": "jsonl", "since": since})
    assert jsonl.status_code == 200 and jsonl["Content-Type"] == "application/x-ndjson"
    records = [orjson.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()]
    assert [r["request_id"] for r in records] == [rows[0]["request_id"], rows[1]["request_id"]]
    assert records[0]["cost_usd"] == "0.001000000" and records[0]["request_text"] == "prompt"
    parquet = client.get(url, {"format": "parquet", "since": since})
    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.num_rows == 2 and "response_text" in table.column_names
    output = tmp_path / "logs.jsonl"
    call_command("audit_export", "--org", a.slug, "--since", since, "--until", timezone.now().isoformat(),
                 "--format", "jsonl", "--dataset", "request_logs", "--output", str(output))
    assert len(output.read_bytes().splitlines()) == 2
    with org_context(a.id):
        datasets = [e.changes["dataset"][1] for e in AuditEvent.objects.filter(action="audit.export")]
    assert datasets.count("request_logs") == 3


@pytest.mark.parametrize(
    "params, field",
    [
        ({"format": "csv", "since": "2026-01-01T00:00:00Z"}, "format"),
        ({"format": "jsonl"}, "since"),
        ({"format": "jsonl", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"format": "jsonl", "since": "2026-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"}, "until"),
    ],
)
def test_export_bad_input(org_a, api_as, params, field):
    a, owner = org_a
    response = api_as(owner).get(f"/api/v1/orgs/{a.slug}/request-logs/export", params)
    assert response.status_code == 400 and field in response.json()


def test_export_of_another_org_is_404(org_a, org_b, api_as):
    (a, owner_a), (b, _) = org_a, org_b
    response = api_as(owner_a).get(f"/api/v1/orgs/{b.slug}/request-logs/export",
                                   {"format": "jsonl", "since": "2026-01-01T00:00:00Z"})
    assert response.status_code == 404
