"""Spend ledger rows and soft-limit alerts leave the hot path through a per-process buffer.

`spend_settle` appends a dict (no I/O); a background thread (a greenlet under gunicorn's gevent
workers) writes them every FLUSH_INTERVAL_SECONDS, one bulk insert per org, and records the alerts
(an audit event and a webhook, see `spend.services.budget_soft_limit_alert`). Rows whose write
fails go back to the buffer. What is left is written by gunicorn's `worker_exit` hook (gunicorn.conf.py)
on a graceful stop and at interpreter exit; the counters in Redis already hold it meanwhile.
"""
import atexit
import logging
import os
import threading
import time
from collections import defaultdict

from django.db import DatabaseError, connection

FLUSH_INTERVAL_SECONDS = 0.5
MAX_BUFFERED_ROWS = 100_000
logger = logging.getLogger(__name__)


class SpendLedgerBuffer:
    def __init__(self):
        self._rows: list[dict] = []
        self._alerts: list[dict] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid: int | None = None
        self.background = True

    def append(self, row: dict | None = None, *, alert: dict | None = None) -> None:
        with self._lock:
            if row is not None:
                if len(self._rows) >= MAX_BUFFERED_ROWS:
                    logger.error("spend ledger buffer full; dropping the oldest row")
                    self._rows.pop(0)
                self._rows.append(row)
            if alert is not None:
                self._alerts.append(alert)
        if self.background and self._flusher_pid != os.getpid():
            self._flusher_start()

    def _flusher_start(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()  # a forked worker starts its own
        threading.Thread(target=self._flush_forever, name="spend-ledger-flusher", daemon=True).start()

    def _flush_forever(self) -> None:
        while self.background:
            time.sleep(FLUSH_INTERVAL_SECONDS)
            self.flush()

    def flush(self) -> int:
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        from spend.models import SpendEntry
        from spend.services import budget_soft_limit_alert
        from tenants.context import org_context

        with self._lock:
            rows, self._rows = self._rows, []
            alerts, self._alerts = self._alerts, []
        by_org: dict = defaultdict(list)
        for row in rows:
            by_org[row["org_id"]].append(row)
        written = 0
        for org_id, org_rows in by_org.items():
            try:
                with org_context(org_id):
                    SpendEntry.objects.bulk_create([SpendEntry(**row) for row in org_rows])
                written += len(org_rows)
            except DatabaseError:
                logger.exception("spend ledger write failed; %s rows kept for the next flush", len(org_rows))
                with self._lock:
                    self._rows[:0] = org_rows
        for alert in alerts:
            try:
                budget_soft_limit_alert(**alert)
            except DatabaseError:
                logger.exception("soft-limit alert for budget %s failed; retried at the next flush", alert["budget_id"])
                with self._lock:
                    self._alerts.append(alert)
        if (rows or alerts) and not connection.in_atomic_block:
            connection.close()  # back to the pool
        return written


spend_ledger_buffer = SpendLedgerBuffer()
atexit.register(spend_ledger_buffer.flush)


def spend_ledger_append(row: dict) -> None:
    spend_ledger_buffer.append(row)


def soft_limit_alert_append(alert: dict) -> None:
    spend_ledger_buffer.append(alert=alert)


def spend_ledger_flush() -> int:
    return spend_ledger_buffer.flush()
