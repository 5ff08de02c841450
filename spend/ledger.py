"""Spend ledger rows leave the hot path through a per-process buffer (tenants/buffers.py): `spend_settle`
appends a dict (no I/O) and the buffer writes one bulk insert per org. The counters in Redis already
hold a row's amount while it waits; a counter rebuild flushes this process's rows first."""
from spend.models import SpendEntry
from tenants.buffers import OrgRowBuffer, org_rows_insert
from tenants.context import org_context


def _write(org_id, rows: list[dict]) -> None:
    with org_context(org_id):
        org_rows_insert(SpendEntry, org_id, rows)


spend_ledger_buffer = OrgRowBuffer("spend-ledger", _write)


def spend_ledger_append(row: dict) -> None:
    spend_ledger_buffer.append(row)


def spend_ledger_flush() -> int:
    return spend_ledger_buffer.flush()
