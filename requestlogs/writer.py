"""Request-log rows leave the hot path through a per-process buffer.

The proxy appends a plain dict (microseconds, no I/O); a background thread (a greenlet
under gunicorn's gevent workers) writes the buffer every FLUSH_INTERVAL seconds, one
bulk insert and one aggregate upsert per org, in that org's context. Redaction for the
`redacted` level happens here, before the write. On a graceful stop the rest is written
by `flush()` from gunicorn's `worker_exit` hook (gunicorn.conf.py) and at interpreter exit.
"""
import atexit
import logging
import os
import threading
import uuid
from collections import defaultdict

from django.db import DataError, DatabaseError, IntegrityError, connection

from guardrails.redaction import text_redact
from requestlogs.models import RequestLog
from tenants.context import org_context
from tenants.models import LoggingLevel

FLUSH_INTERVAL_SECONDS = 0.5
MAX_BUFFERED_ROWS = 100_000
logger = logging.getLogger(__name__)

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
        RequestLog.objects.bulk_create([RequestLog(org_id=org_id, **_redacted(dict(row))) for row in rows])
        with connection.cursor() as cursor:
            cursor.executemany(DAILY_USAGE_UPSERT, _daily_usage(org_id, rows))


class RequestLogBuffer:
    def __init__(self):
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        # Held for a whole flush, so that the exit flush waits for a periodic flush still writing.
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._flusher_pid: int | None = None
        # Tests that write the buffer themselves turn the background flusher off, so it cannot race them.
        self.background = True
        self.dropped = 0

    def append(self, row: dict) -> None:
        with self._lock:
            if len(self._rows) >= MAX_BUFFERED_ROWS:
                # The database has been unreachable for a long while: keep memory bounded.
                self._rows.pop(0)
                self.dropped += 1
            self._rows.append(row)
        if self.background and self._flusher_pid != os.getpid():
            self._flusher_start()

    def _flusher_start(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()  # a forked worker starts its own
        threading.Thread(target=self._flush_forever, name="request-log-flusher", daemon=True).start()

    def _flush_forever(self) -> None:
        while self.background:
            self._wake.wait(FLUSH_INTERVAL_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Writes everything buffered; rows of an org whose write fails go back to the buffer."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        by_org: dict = defaultdict(list)
        for row in rows:
            by_org[row["org_id"]].append(row)
        written = 0
        for org_id, org_rows in by_org.items():
            try:
                _write(org_id, [_without_org(row) for row in org_rows])
                written += len(org_rows)
            except (IntegrityError, DataError):
                written += self._write_one_by_one(org_id, org_rows)
            except DatabaseError:
                logger.exception("request log write failed; %s rows kept for the next flush", len(org_rows))
                with self._lock:
                    self._rows[:0] = org_rows
        if rows and not connection.in_atomic_block:
            connection.close()  # back to the pool
        return written


    def _write_one_by_one(self, org_id, rows: list[dict]) -> int:
        """A batch the database refuses as data: write what it accepts, drop (and log) what it never will."""
        written = 0
        for row in rows:
            try:
                _write(org_id, [_without_org(row)])
                written += 1
            except (IntegrityError, DataError):
                self.dropped += 1
                logger.exception("request log row %s refused by the database; dropped", row.get("request_id"))
        return written


def _without_org(row: dict) -> dict:
    return {name: value for name, value in row.items() if name != "org_id"}


request_log_buffer = RequestLogBuffer()
atexit.register(request_log_buffer.flush)


def request_log_append(row: dict) -> None:
    request_log_buffer.append(row)


