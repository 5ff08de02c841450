"""Rows that leave the hot path through a per-process buffer, written per org in the background.

The proxy appends plain dicts (microseconds, no I/O); a background thread (a greenlet under
gunicorn's gevent workers) hands each org's rows to the buffer's `write` every FLUSH_INTERVAL_SECONDS.
An org whose write fails on the database stays buffered for the next flush; a batch the database
refuses as data is written row by row, and a row it never accepts is dropped and logged. On a
graceful stop the rest is written by `flush()` from gunicorn's `worker_exit` hook (gunicorn.conf.py)
and at interpreter exit.
"""
import atexit
import functools
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import orjson
import psycopg
from django.db import DataError, DatabaseError, IntegrityError, connection, models
from psycopg.types.json import Jsonb

FLUSH_INTERVAL_SECONDS = 0.5
MAX_BUFFERED_ROWS = 100_000
logger = logging.getLogger(__name__)


class OrgRowBuffer:
    def __init__(self, name: str, write: Callable[[object, list[dict]], None]):
        """`write(org_id, rows)` stores one org's rows (each without its `org_id`) or raises."""
        self.name = name
        self._write = write
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        # Held for a whole flush, so that the exit flush waits for a periodic flush still writing.
        self._flushing = threading.Lock()
        self._flusher_pid: int | None = None
        # Tests that write the buffer themselves turn the background flusher off, so it cannot race them.
        self.background = True
        self.dropped = 0
        atexit.register(self.flush)

    def append(self, row: dict) -> None:
        with self._lock:
            if len(self._rows) >= MAX_BUFFERED_ROWS:
                # The database has been unreachable for a long while: keep memory bounded.
                self._rows.pop(0)
                self.dropped += 1
                logger.error("%s buffer full; dropped the oldest row", self.name)
            self._rows.append(row)
        if self.background and self._flusher_pid != os.getpid():
            self._flusher_start()

    def _flusher_start(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()  # a forked worker starts its own
        threading.Thread(target=self._flush_forever, name=f"{self.name}-flusher", daemon=True).start()

    def _flush_forever(self) -> None:
        while self.background:
            time.sleep(FLUSH_INTERVAL_SECONDS)
            self.flush()

    def flush(self) -> int:
        """Writes everything buffered; returns how many rows were written."""
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
                self._write(org_id, [_without_org(row) for row in org_rows])
                written += len(org_rows)
            except (IntegrityError, DataError):
                written += self._write_one_by_one(org_id, org_rows)
            except DatabaseError:
                logger.exception("%s write failed; %s rows kept for the next flush", self.name, len(org_rows))
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
                self._write(org_id, [_without_org(row)])
                written += 1
            except (IntegrityError, DataError):
                self.dropped += 1
                logger.exception("%s row %s refused by the database; dropped", self.name, row.get("request_id"))
        return written


def _without_org(row: dict) -> dict:
    return {name: value for name, value in row.items() if name != "org_id"}


@functools.cache
def _insert_statement(model: type[models.Model]) -> tuple[tuple[models.Field, ...], str]:
    fields = tuple(model._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return fields, f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES ({placeholders})"


def _json_text(value) -> str:
    return orjson.dumps(value).decode()


def _column_value(field: models.Field, org_id, row: dict):
    if field.attname == "org_id":
        return org_id
    value = row[field.attname] if field.attname in row else field.get_default()
    return Jsonb(value, dumps=_json_text) if isinstance(field, models.JSONField) and value is not None else value


def org_rows_insert(model: type[models.Model], org_id, rows: list[dict]) -> None:
    """Inserts plain rows (attribute names as keys) of one org, inside its `org_context`.

    One statement sent for all rows with server-side binding: about a third of bulk_create's CPU, which
    builds and quotes every value in Python; the write buffers run in the serving processes, so it counts.
    """
    fields, statement = _insert_statement(model)
    values = [tuple(_column_value(field, org_id, row) for field in fields) for row in rows]
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.executemany(statement, values)
