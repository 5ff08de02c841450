"""Management API for the audit trail: list and filter, export. Owners and admins only: events name
members, their addresses and every change made to the org."""
import datetime

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer

from audit import selectors, services
from audit.actors import ActorKind
from audit.exports import CONTENT_TYPES, FILE_EXTENSIONS, FORMATS
from audit.models import AuditEvent
from config.api import TimeRangeInput, query_params
from tenants.apis import OrgApi
from tenants.models import Role

EXPORT_MAX_DAYS = 31


class AuditEventOutput(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "seq", "created_at", "actor_kind", "actor_user_id", "actor_token_id", "actor_label", "action",
            "target_type", "target_id", "changes", "source_ip", "user_agent", "request_id", "prev_hash", "hash",
        ]


class AuditEventFilterInput(TimeRangeInput):
    actor = serializers.CharField(
        required=False, max_length=254, help_text="A person's email (console and their admin tokens) or an admin token id."
    )
    actor_kind = serializers.ChoiceField(choices=ActorKind.choices, required=False)
    action = serializers.CharField(required=False, max_length=64, help_text="e.g. member.role_change")
    target_type = serializers.CharField(required=False, max_length=64, help_text="e.g. tenants.Team")
    target_id = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    offset = serializers.IntegerField(required=False, min_value=0)


class AuditExportInput(TimeRangeInput):
    format = serializers.ChoiceField(choices=FORMATS)
    since = serializers.DateTimeField(help_text="ISO 8601; inclusive.")
    until = serializers.DateTimeField(required=False, help_text=f"ISO 8601; exclusive. Default: now. At most {EXPORT_MAX_DAYS} days after since.")

    def validate(self, data):
        data.setdefault("until", timezone.now())
        data = super().validate(data)
        if data["until"] - data["since"] > datetime.timedelta(days=EXPORT_MAX_DAYS):
            raise serializers.ValidationError({"until": [f"Export at most {EXPORT_MAX_DAYS} days at a time."]})
        return data


class AuditEventListApi(OrgApi):
    """The org's audit events, newest first, filtered and paginated (`limit`, `offset`)."""

    required_role = {"GET": Role.ADMIN}

    @extend_schema(parameters=[AuditEventFilterInput], responses=AuditEventOutput(many=True))
    def get(self, request, org):
        filters = AuditEventFilterInput(data=query_params(request))
        filters.is_valid(raise_exception=True)
        criteria = {name: value for name, value in filters.validated_data.items() if name not in ("limit", "offset")}
        return self.paginated(selectors.audit_event_list(org=self.org, **criteria), AuditEventOutput)


class ExportFormatNegotiation(DefaultContentNegotiation):
    """`format` names the export's file format here, not one of DRF's renderers; errors are JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AuditEventExportApi(OrgApi):
    """Streams the events of a time range in chain order, with every signed field; the export is itself audited.
    Subclasses export another dataset by setting `dataset` and `export_chunks`."""

    required_role = {"GET": Role.ADMIN}
    renderer_classes = [JSONRenderer]
    content_negotiation_class = ExportFormatNegotiation
    dataset = "audit_events"

    def export_chunks(self, *, since, until, export_format):
        return selectors.audit_event_export_chunks(org=self.org, since=since, until=until, export_format=export_format)

    @extend_schema(
        parameters=[AuditExportInput],
        responses={
            (200, content_type): OpenApiResponse(OpenApiTypes.BINARY, description=f"{name} file")
            for name, content_type in CONTENT_TYPES.items()
        },
    )
    def get(self, request, org):
        params = AuditExportInput(data=query_params(request))
        params.is_valid(raise_exception=True)
        export_format, since, until = (params.validated_data[name] for name in ("format", "since", "until"))
        services.audit_export_record(
            org=self.org, actor=self.actor, dataset=self.dataset, export_format=export_format, since=since, until=until
        )
        chunks = self.export_chunks(since=since, until=until, export_format=export_format)
        response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[export_format])
        stem = self.dataset.replace("_", "-")
        filename = f"{stem}-{self.org.slug}-{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}.{FILE_EXTENSIONS[export_format]}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
