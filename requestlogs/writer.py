"""Request-log rows leave the hot path through a per-process buffer (tenants/buffers.py):
one bulk insert and one aggregate upsert per org, in that org's context. Redaction for the
`redacted` level happens here, before the write.
"""
import uuid
from collections import defaultdict

from django.db import connection

from guardrails.redaction import text_redact
from requestlogs.models import RequestLog
from tenants.buffers import OrgRowBuffer, org_rows_insert
from tenants.context import org_context
from tenants.models import LoggingLevel

DAILY_USAGE_UPSERT = """
INSERT INTO requestlogs_requestdailyusage
    (id, org_id, day, team_id, key_id, alias, deployment, requests, errors, prompt_tokens, completion_tokens, cost_usd)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (org_id, day, team_id, key_id, alias, deployment) DO UPDATE SET
    requests = requestlogs_requestdailyusage.requests + EXCLUDED.requests,
    errors = requestlogs_requestdailyusage.errors + EXCLUDED.errors,
    prompt_tokens = requestlogs_requestdailyusage.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = requestlogs_requestdailyusage.completion_tokens + EXCLUDED.completion_tokens,
    cost_usd = requestlogs_requestdailyusage.cost_usd + EXCLUDED.cost_usd
"""


def _redacted(row: dict) -> dict:
    if row["logging_level"] != LoggingLevel.REDACTED:
        return row
    for field in ("request_text", "response_text"):
        if row.get(field):
            row[field], _ = text_redact(row[field])
    return row


def _daily_usage(org_id, rows: list[dict]) -> list[tuple]:
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in rows:
        key = (row["created_at"].date(), row["team_id"], row["key_id"], row["alias"], row["deployment"])
        total = totals[key]
        total[0] += 1
        total[1] += row["status"] >= 400
        total[2] += row["prompt_tokens"]
        total[3] += row["completion_tokens"]
        total[4] += row["cost_usd"]
    return [(uuid.uuid4(), org_id, *key, *total) for key, total in totals.items()]


def _write(org_id, rows: list[dict]) -> None:
    with org_context(org_id):
        org_rows_insert(RequestLog, org_id, [_redacted(dict(row)) for row in rows])
        with connection.cursor() as cursor:
            cursor.executemany(DAILY_USAGE_UPSERT, _daily_usage(org_id, rows))


request_log_buffer = OrgRowBuffer("request-log", _write)


def request_log_append(row: dict) -> None:
    request_log_buffer.append(row)


