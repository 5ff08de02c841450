import datetime
from collections.abc import Iterator

from django.db.models import QuerySet

from audit.exports import Column, ColumnKind, export_chunks
from tenants.context import org_context

from requestlogs.models import RequestDailyUsage, RequestLog
from tenants.models import Org


def request_log_list(
    *, org: Org, since: datetime.datetime | None = None, until: datetime.datetime | None = None, key_id=None,
    team_id=None, alias: str | None = None, status: int | None = None, end_user: str | None = None,
) -> QuerySet[RequestLog]:
    logs = RequestLog.objects.filter(org=org)
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    if until is not None:
        logs = logs.filter(created_at__lt=until)
    if key_id is not None:
        logs = logs.filter(key_id=key_id)
    if team_id is not None:
        logs = logs.filter(team_id=team_id)
    if alias:
        logs = logs.filter(alias=alias)
    if status is not None:
        logs = logs.filter(status=status)
    if end_user:
        logs = logs.filter(end_user=end_user)
    return logs.order_by("-created_at")


def daily_usage_list(*, org: Org, since: datetime.date | None = None, until: datetime.date | None = None) -> QuerySet:
    usage = RequestDailyUsage.objects.filter(org=org)
    if since is not None:
        usage = usage.filter(day__gte=since)
    if until is not None:
        usage = usage.filter(day__lte=until)
    return usage.order_by("-day", "alias", "deployment")


EXPORT_BATCH = 2000
EXPORT_COLUMNS = (
    Column("org_id", ColumnKind.UUID), Column("id", ColumnKind.UUID), Column("created_at", ColumnKind.TIMESTAMP),
    Column("request_id"), Column("team_id", ColumnKind.UUID), Column("key_id", ColumnKind.UUID),
    Column("key_last_four"), Column("end_user"), Column("client_ip", ColumnKind.IP), Column("endpoint"),
    Column("alias"), Column("deployment"), Column("upstream_model"), Column("provider_kind"),
    Column("status", ColumnKind.INT), Column("error_code"), Column("stream", ColumnKind.BOOL),
    Column("prompt_tokens", ColumnKind.INT), Column("completion_tokens", ColumnKind.INT),
    Column("cost_usd", ColumnKind.DECIMAL, precision=18, scale=9), Column("latency_ms", ColumnKind.INT),
    Column("ttft_ms", ColumnKind.INT), Column("attempts", ColumnKind.INT), Column("guardrail", ColumnKind.JSON),
    Column("routing", ColumnKind.JSON), Column("logging_level"), Column("request_text"), Column("response_text"),
)


def request_log_export_chunks(
    *, org: Org, since: datetime.datetime, until: datetime.datetime, export_format: str
) -> Iterator[bytes]:
    """The rows of a time range, oldest first, as JSON Lines or Parquet. Enters the org context itself,
    because a streamed response is read after the view returned."""
    with org_context(org.id):
        rows = (
            RequestLog.objects.filter(org=org, created_at__gte=since, created_at__lt=until)
            .order_by("created_at")
            .values(*(column.name for column in EXPORT_COLUMNS))
            .iterator(chunk_size=EXPORT_BATCH)
        )
        yield from export_chunks(rows, EXPORT_COLUMNS, export_format=export_format)
