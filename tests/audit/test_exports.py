import datetime
import decimal
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest

from audit.exports import Column, ColumnKind, export_chunks, jsonl_chunks, parquet_chunks

COLUMNS = [
    Column("id", ColumnKind.UUID), Column("at", ColumnKind.TIMESTAMP), Column("name"), Column("count", ColumnKind.INT),
    Column("ratio", ColumnKind.FLOAT), Column("ok", ColumnKind.BOOL), Column("data", ColumnKind.JSON),
    Column("cost", ColumnKind.DECIMAL, precision=18, scale=9), Column("ip", ColumnKind.IP),
]
AT = datetime.datetime(2026, 11, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC)


def rows(count: int):
    for index in range(count):
        yield {
            "id": uuid.UUID(int=index), "at": AT, "name": f"row {index}", "count": index, "ratio": index / 4,
            "ok": index % 2 == 0, "data": {"n": [index, None]}, "cost": decimal.Decimal("0.000001234"),
            "ip": "192.0.2.1" if index else None, "ignored": "not a column",
        }


def test_jsonl_writes_one_object_per_line_in_column_order():
    lines = b"".join(jsonl_chunks(rows(2), COLUMNS)).decode().splitlines()
    first = json.loads(lines[0])
    assert list(first) == [column.name for column in COLUMNS]
    assert first == {
        "id": str(uuid.UUID(int=0)), "at": "2026-11-01T12:30:15.123456Z", "name": "row 0", "count": 0, "ratio": 0.0,
        "ok": True, "data": {"n": [0, None]}, "cost": "0.000001234", "ip": None,
    }
    assert len(lines) == 2


def test_jsonl_streams_in_chunks():
    chunks = list(jsonl_chunks(rows(3000), COLUMNS))
    assert len(chunks) > 1
    assert sum(chunk.count(b"\n") for chunk in chunks) == 3000


def test_parquet_round_trips_with_types_and_row_groups():
    chunks = list(parquet_chunks(rows(25), COLUMNS, row_group_rows=10))
    assert len(chunks) == 3  # two full row groups as they are written, then the last one with the footer
    table = pq.read_table(io.BytesIO(b"".join(chunks)))
    assert pq.ParquetFile(io.BytesIO(b"".join(chunks))).metadata.num_row_groups == 3
    assert table.num_rows == 25
    assert str(table.schema.field("at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("cost").type) == "decimal128(18, 9)"
    last = table.to_pylist()[-1]
    assert last["at"] == AT and last["cost"] == decimal.Decimal("0.000001234") and last["ok"] is True
    assert json.loads(last["data"]) == {"n": [24, None]} and last["id"] == str(uuid.UUID(int=24))


def test_an_empty_export_is_still_a_valid_file():
    assert b"".join(jsonl_chunks([], COLUMNS)) == b""
    table = pq.read_table(io.BytesIO(b"".join(parquet_chunks([], COLUMNS))))
    assert table.num_rows == 0 and table.schema.names == [column.name for column in COLUMNS]


def test_unknown_format():
    with pytest.raises(ValueError, match="csv"):
        export_chunks([], COLUMNS, export_format="csv")
