"""Management API for budgets, rate limits and spend reports. Admins change budgets and limits;
every member from viewer up reads them and the reports."""
import csv
import datetime
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from audit.apis import ExportFormatNegotiation
from audit.services import audit_export_record
from config.api import StrictSerializer, TimeRangeInput, query_params
from config.errors import NotFound, ValidationFailed
from keys import selectors as key_selectors
from spend import selectors, services
from spend.models import Budget, BudgetPeriod, BudgetScope, RateLimit, RateLimitScope
from spend.pricing import microusd_to_usd
from tenants import selectors as tenant_selectors
from tenants.apis import OrgApi
from tenants.models import Role

READ, ADMIN = Role.VIEWER, Role.ADMIN
EXPORT_MAX_DAYS = 366


def _usd(amount: int | None) -> str | None:
    return None if amount is None else format(microusd_to_usd(amount), "f")


def _amount_field(**options):
    return serializers.DecimalField(max_digits=16, decimal_places=6, help_text="US dollars, above 0, at most 1e9.",
                                    **options)


class BudgetOutput(serializers.ModelSerializer):
    amount_usd = serializers.SerializerMethodField()
    soft_limit_usd = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = ["id", "scope", "key_id", "team_id", "end_user", "amount_usd", "soft_limit_usd", "period",
                  "created_at", "updated_at"]

    def get_amount_usd(self, budget) -> str:
        return _usd(budget.amount_microusd)

    def get_soft_limit_usd(self, budget) -> str | None:
        return _usd(budget.soft_limit_microusd)


class BudgetInput(StrictSerializer):
    scope = serializers.ChoiceField(choices=BudgetScope.choices)
    key_id = serializers.UUIDField(required=False, help_text="A key of the org (scope key).")
    team_id = serializers.UUIDField(required=False, help_text="A team of the org (scope team).")
    end_user = serializers.CharField(required=False, allow_blank=True, max_length=256, trim_whitespace=False,
                                     help_text="Scope end_user: one end user, or empty for each end user's default cap.")
    amount_usd = _amount_field()
    soft_limit_usd = _amount_field(required=False, allow_null=True)
    period = serializers.ChoiceField(choices=BudgetPeriod.choices)


class BudgetUpdateInput(StrictSerializer):
    amount_usd = _amount_field(required=False)
    soft_limit_usd = _amount_field(required=False, allow_null=True)
    period = serializers.ChoiceField(choices=BudgetPeriod.choices, required=False)


def _targets(org, data: dict) -> dict:
    """The key and team ids of a request as objects of the org; another org's is a field error."""
    lookups = (("key_id", "key", lambda ref: key_selectors.virtual_key_get(org=org, key_id=ref)),
               ("team_id", "team", lambda ref: tenant_selectors.team_get(org=org, team_id=ref)))
    targets = {}
    for field, name, lookup in lookups:
        if field in data:
            try:
                targets[name] = lookup(data.pop(field))
            except NotFound as exc:
                raise ValidationFailed(exc.message, field=field) from None
    return targets


class BudgetListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=BudgetOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.budget_list(org=self.org), BudgetOutput)

    @extend_schema(request=BudgetInput, responses={201: BudgetOutput})
    def post(self, request, org):
        data = BudgetInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        budget = services.budget_create(org=self.org, actor=self.actor, **_targets(self.org, fields), **fields)
        return Response(BudgetOutput(budget).data, status=status.HTTP_201_CREATED)


class BudgetDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}

    @extend_schema(responses=BudgetOutput)
    def get(self, request, org, budget_id):
        return Response(BudgetOutput(selectors.budget_get(org=self.org, budget_id=budget_id)).data)

    @extend_schema(request=BudgetUpdateInput, responses=BudgetOutput)
    def patch(self, request, org, budget_id):
        budget = selectors.budget_get(org=self.org, budget_id=budget_id)
        data = BudgetUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.budget_update(org=self.org, budget=budget, actor=self.actor, **data.validated_data)
        return Response(BudgetOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, budget_id):
        budget = selectors.budget_get(org=self.org, budget_id=budget_id)
        services.budget_delete(org=self.org, budget=budget, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BudgetStateInput(StrictSerializer):
    end_user = serializers.CharField(required=False, max_length=256, trim_whitespace=False,
                                     help_text="For a default end-user budget: whose counter.")


class BudgetStateOutput(serializers.Serializer):
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    amount_usd = serializers.CharField()
    spent_usd = serializers.CharField()
    reserved_usd = serializers.CharField()
    remaining_usd = serializers.CharField()
    counter_in_redis = serializers.BooleanField()


class BudgetStateApi(OrgApi):
    """The current period's counter of a budget: settled spend, open reservations and what is left."""

    required_role = {"GET": READ}

    @extend_schema(parameters=[BudgetStateInput], responses=BudgetStateOutput)
    def get(self, request, org, budget_id):
        budget = selectors.budget_get(org=self.org, budget_id=budget_id)
        params = BudgetStateInput(data=query_params(request))
        params.is_valid(raise_exception=True)
        state = selectors.budget_state(org=self.org, budget=budget, end_user=params.validated_data.get("end_user", ""))
        return Response(BudgetStateOutput({
            "period_start": state.period_start, "period_end": state.period_end,
            "amount_usd": _usd(state.amount_microusd), "spent_usd": _usd(state.spent_microusd),
            "reserved_usd": _usd(state.reserved_microusd), "remaining_usd": _usd(state.remaining_microusd),
            "counter_in_redis": state.counter_in_redis,
        }).data)


# Rate limits ------------------------------------------------------------------------------

def _limit_field():
    return serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=services.RATE_LIMIT_MAX)


class RateLimitOutput(serializers.ModelSerializer):
    class Meta:
        model = RateLimit
        fields = ["id", "scope", "key_id", "team_id", "requests_per_minute", "tokens_per_minute", "max_concurrent",
                  "created_at", "updated_at"]


class RateLimitInput(StrictSerializer):
    scope = serializers.ChoiceField(choices=RateLimitScope.choices)
    key_id = serializers.UUIDField(required=False)
    team_id = serializers.UUIDField(required=False)
    requests_per_minute = _limit_field()
    tokens_per_minute = _limit_field()
    max_concurrent = _limit_field()


class RateLimitUpdateInput(StrictSerializer):
    requests_per_minute = _limit_field()
    tokens_per_minute = _limit_field()
    max_concurrent = _limit_field()


class RateLimitListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=RateLimitOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.rate_limit_list(org=self.org), RateLimitOutput)

    @extend_schema(request=RateLimitInput, responses={201: RateLimitOutput})
    def post(self, request, org):
        data = RateLimitInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        limit = services.rate_limit_create(org=self.org, actor=self.actor, **_targets(self.org, fields), **fields)
        return Response(RateLimitOutput(limit).data, status=status.HTTP_201_CREATED)


class RateLimitDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}

    @extend_schema(responses=RateLimitOutput)
    def get(self, request, org, limit_id):
        return Response(RateLimitOutput(selectors.rate_limit_get(org=self.org, limit_id=limit_id)).data)

    @extend_schema(request=RateLimitUpdateInput, responses=RateLimitOutput)
    def patch(self, request, org, limit_id):
        limit = selectors.rate_limit_get(org=self.org, limit_id=limit_id)
        data = RateLimitUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.rate_limit_update(org=self.org, limit=limit, actor=self.actor, **data.validated_data)
        return Response(RateLimitOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, limit_id):
        limit = selectors.rate_limit_get(org=self.org, limit_id=limit_id)
        services.rate_limit_delete(org=self.org, limit=limit, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Spend reports ----------------------------------------------------------------------------

class SpendReportInput(TimeRangeInput):
    group_by = serializers.CharField(required=False, default="org",
                                     help_text=f"Comma-separated: {', '.join(selectors.GROUPS)}.")

    def validate_group_by(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in selectors.GROUPS]
        if unknown or not names:
            raise serializers.ValidationError(f"Group by any of {', '.join(selectors.GROUPS)}.")
        return names


class SpendRowOutput(serializers.Serializer):
    team_id = serializers.UUIDField(required=False)
    key_id = serializers.UUIDField(required=False)
    alias = serializers.CharField(required=False)
    end_user = serializers.CharField(required=False)
    day = serializers.DateField(required=False)
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost_usd = serializers.CharField()


class SpendReportApi(OrgApi):
    """Requests, tokens and cost from the spend ledger, grouped, over a time range."""

    required_role = {"GET": READ}

    @extend_schema(parameters=[SpendReportInput], responses=SpendRowOutput(many=True))
    def get(self, request, org):
        params = SpendReportInput(data=query_params(request))
        params.is_valid(raise_exception=True)
        rows = selectors.spend_report(org=self.org, group_by=params.validated_data["group_by"],
                                      since=params.validated_data.get("since"), until=params.validated_data.get("until"))
        for row in rows:
            row["cost_usd"] = _usd(row.pop("cost_microusd"))
        return Response(SpendRowOutput(rows, many=True).data)


class SpendExportInput(TimeRangeInput):
    since = serializers.DateTimeField(help_text="ISO 8601; inclusive.")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows) -> Iterator[bytes]:
    writer = csv.writer(_Echo())
    yield writer.writerow([*selectors.EXPORT_FIELDS[:-4], "reserved_usd", "cost_usd", "status", "error_code"]).encode()
    for row in rows:
        values = [row[name] for name in selectors.EXPORT_FIELDS[:-4]]
        values = [value.isoformat() if isinstance(value, datetime.datetime) else "" if value is None else value
                  for value in values]
        yield writer.writerow([*values, _usd(row["reserved_microusd"]), _usd(row["cost_microusd"]), row["status"],
                               row["error_code"]]).encode()


class SpendExportApi(OrgApi):
    """The ledger rows of a time range as CSV, oldest first, streamed; the export is itself audited."""

    required_role = {"GET": READ}
    renderer_classes = [JSONRenderer]
    content_negotiation_class = ExportFormatNegotiation

    @extend_schema(parameters=[SpendExportInput],
                   responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="CSV file")})
    def get(self, request, org):
        params = SpendExportInput(data=query_params(request))
        params.is_valid(raise_exception=True)
        since = params.validated_data["since"]
        until = params.validated_data.get("until") or timezone.now()
        if until <= since or until - since > datetime.timedelta(days=EXPORT_MAX_DAYS):
            raise ValidationFailed(f"'until' must be after 'since' and at most {EXPORT_MAX_DAYS} days later.",
                                   field="until")
        audit_export_record(org=self.org, actor=self.actor, dataset="spend", export_format="csv", since=since,
                            until=until)
        response = StreamingHttpResponse(
            _csv_lines(selectors.spend_export_rows(org=self.org, since=since, until=until)), content_type="text/csv")
        response["Content-Disposition"] = (f'attachment; filename="spend-{self.org.slug}-{since:%Y%m%dT%H%M%S}-'
                                           f'{until:%Y%m%dT%H%M%S}.csv"')
        return response
