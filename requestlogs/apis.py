from drf_spectacular.utils import extend_schema
from rest_framework import serializers

from audit.apis import AuditEventExportApi
from config.api import StrictSerializer, TimeRangeInput, query_params
from requestlogs import selectors
from requestlogs.models import RequestDailyUsage, RequestLog
from tenants.apis import OrgApi
from tenants.models import Role


class RequestLogOutput(serializers.ModelSerializer):
    class Meta:
        model = RequestLog
        fields = [
            "id", "created_at", "request_id", "team_id", "key_id", "key_last_four", "end_user", "client_ip", "endpoint",
            "alias", "deployment", "upstream_model", "provider_kind", "status", "error_code", "stream", "prompt_tokens",
            "completion_tokens", "cost_usd", "latency_ms", "ttft_ms", "attempts", "guardrail", "routing", "logging_level",
            "request_text", "response_text",
        ]


class RequestLogFilterInput(TimeRangeInput):
    key_id = serializers.UUIDField(required=False)
    team_id = serializers.UUIDField(required=False)
    alias = serializers.CharField(required=False, max_length=200)
    status = serializers.IntegerField(required=False, min_value=100, max_value=599)
    end_user = serializers.CharField(required=False, max_length=256)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    offset = serializers.IntegerField(required=False, min_value=0)


class RequestLogListApi(OrgApi):
    """Request logs may hold prompt text (at the redacted and full levels): owners and admins only."""

    required_role = {"GET": Role.ADMIN}

    @extend_schema(parameters=[RequestLogFilterInput], responses=RequestLogOutput(many=True))
    def get(self, request, org):
        filters = RequestLogFilterInput(data=query_params(request))
        filters.is_valid(raise_exception=True)
        criteria = {k: v for k, v in filters.validated_data.items() if k not in ("limit", "offset")}
        return self.paginated(selectors.request_log_list(org=self.org, **criteria), RequestLogOutput)


class DailyUsageOutput(serializers.ModelSerializer):
    class Meta:
        model = RequestDailyUsage
        fields = ["day", "team_id", "key_id", "alias", "deployment", "requests", "errors", "prompt_tokens",
                  "completion_tokens", "cost_usd"]


class DailyUsageFilterInput(StrictSerializer):
    since = serializers.DateField(required=False)
    until = serializers.DateField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    offset = serializers.IntegerField(required=False, min_value=0)


class DailyUsageListApi(OrgApi):
    required_role = {"GET": Role.VIEWER}

    @extend_schema(parameters=[DailyUsageFilterInput], responses=DailyUsageOutput(many=True))
    def get(self, request, org):
        filters = DailyUsageFilterInput(data=query_params(request))
        filters.is_valid(raise_exception=True)
        criteria = {k: v for k, v in filters.validated_data.items() if k in ("since", "until")}
        return self.paginated(selectors.daily_usage_list(org=self.org, **criteria), DailyUsageOutput)


class RequestLogExportApi(AuditEventExportApi):
    """Request logs of a time range as JSON Lines or Parquet (same parameters and limits as the audit export)."""

    dataset = "request_logs"

    def export_chunks(self, *, since, until, export_format):
        return selectors.request_log_export_chunks(org=self.org, since=since, until=until, export_format=export_format)
