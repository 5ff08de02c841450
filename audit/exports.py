"""Writing rows as JSON Lines or Parquet, streamed: for auditors and SIEMs.

Reusable for any table: pass an iterable of dicts and the columns to write. Nothing is held in
memory beyond one batch (JSON Lines) or one row group (Parquet), so an export can be streamed
over HTTP or written to a file.

    columns = [Column("created_at", ColumnKind.TIMESTAMP), Column("action"), Column("changes", ColumnKind.JSON)]
    for chunk in export_chunks(rows, columns, export_format="parquet"):
        output.write(chunk)
"""
import dataclasses
import datetime
import decimal
from collections.abc import Iterable, Iterator, Sequence

import orjson

JSONL, PARQUET = "jsonl", "parquet"
FORMATS = (JSONL, PARQUET)
CONTENT_TYPES = {JSONL: "application/x-ndjson", PARQUET: "application/vnd.apache.parquet"}
FILE_EXTENSIONS = {JSONL: "jsonl", PARQUET: "parquet"}
JSONL_CHUNK_BYTES = 64 * 1024
PARQUET_ROW_GROUP_ROWS = 10_000


class ColumnKind:
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"  # aware datetime; written in UTC, microseconds
    UUID = "uuid"  # written as text
    JSON = "json"  # any JSON value; a JSON text column in Parquet
    DECIMAL = "decimal"  # exact: a string in JSON Lines, decimal128(precision, scale) in Parquet
    IP = "ip"  # written as text


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: str = ColumnKind.STRING
    precision: int = 38
    scale: int = 9


def _json_default(value):
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _text_value(value, column: Column):
    """The value as JSON Lines writes it."""
    if value is None:
        return None
    if column.kind == ColumnKind.TIMESTAMP:
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if column.kind in (ColumnKind.UUID, ColumnKind.IP):
        return str(value)
    if column.kind == ColumnKind.DECIMAL:
        return format(decimal.Decimal(value), "f")
    return value


def jsonl_chunks(rows: Iterable[dict], columns: Sequence[Column]) -> Iterator[bytes]:
    """One JSON object per line, keys in column order, in chunks of about 64 KiB."""
    buffer = bytearray()
    for row in rows:
        record = {column.name: _text_value(row.get(column.name), column) for column in columns}
        buffer += orjson.dumps(record, default=_json_default)
        buffer += b"\n"
        if len(buffer) >= JSONL_CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def parquet_schema(columns: Sequence[Column]):
    import pyarrow as pa

    types = {
        ColumnKind.STRING: pa.string(), ColumnKind.INT: pa.int64(), ColumnKind.FLOAT: pa.float64(),
        ColumnKind.BOOL: pa.bool_(), ColumnKind.TIMESTAMP: pa.timestamp("us", tz="UTC"), ColumnKind.UUID: pa.string(),
        ColumnKind.JSON: pa.string(), ColumnKind.IP: pa.string(),
    }
    return pa.schema([
        pa.field(column.name, pa.decimal128(column.precision, column.scale) if column.kind == ColumnKind.DECIMAL
                 else types[column.kind])
        for column in columns
    ])


def _parquet_value(value, column: Column):
    if value is None:
        return None
    if column.kind == ColumnKind.JSON:
        return orjson.dumps(value, default=_json_default).decode()
    if column.kind in (ColumnKind.UUID, ColumnKind.IP):
        return str(value)
    if column.kind == ColumnKind.DECIMAL:
        return decimal.Decimal(value)
    return value


class _ChunkSink:
    """A write-only file that keeps what was written until it is drained (for streaming Parquet)."""

    closed = False

    def __init__(self):
        self._chunks: list[bytes] = []
        self._position = 0

    def write(self, data) -> int:
        data = bytes(data)
        self._chunks.append(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def parquet_chunks(
    rows: Iterable[dict], columns: Sequence[Column], *, row_group_rows: int = PARQUET_ROW_GROUP_ROWS
) -> Iterator[bytes]:
    """A Parquet file (zstd), one row group per `row_group_rows` rows, yielded as each group is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(columns)
    sink = _ChunkSink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    try:
        batch = {column.name: [] for column in columns}
        size = 0
        for row in rows:
            for column in columns:
                batch[column.name].append(_parquet_value(row.get(column.name), column))
            size += 1
            if size >= row_group_rows:
                writer.write_table(pa.Table.from_pydict(batch, schema=schema))
                batch = {column.name: [] for column in columns}
                size = 0
                yield sink.drain()
        if size:
            writer.write_table(pa.Table.from_pydict(batch, schema=schema))
    finally:
        writer.close()
    yield sink.drain()


def export_chunks(rows: Iterable[dict], columns: Sequence[Column], *, export_format: str) -> Iterator[bytes]:
    if export_format == JSONL:
        return jsonl_chunks(rows, columns)
    if export_format == PARQUET:
        return parquet_chunks(rows, columns)
    raise ValueError(f"Unknown export format {export_format!r}; use one of {', '.join(FORMATS)}.")
