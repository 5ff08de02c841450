"""Management API for data-subject requests: owners and admins only, since what they find is personal data."""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from config.api import StrictSerializer
from privacy import selectors, services
from privacy.models import DataSubjectRequest, RequestKind, SubjectKind
from tenants.apis import OrgApi
from tenants.models import Role

ADMIN = Role.ADMIN


class DataSubjectRequestOutput(serializers.ModelSerializer):
    filed_by = serializers.EmailField(source="filed_by.email", allow_null=True, default=None)
    archive_expires_at = serializers.SerializerMethodField()

    class Meta:
        model = DataSubjectRequest
        fields = [
            "id", "kind", "subject_kind", "subject_value", "subject_hash", "salt", "status", "filed_by", "filed_at",
            "due_at", "started_at", "finished_at", "overdue_at", "attempts", "counts", "error", "archive_expires_at",
        ]
        extra_kwargs = {
            "subject_value": {"help_text": "Blank once an erasure completed: then only `subject_hash` names the subject."},
            "salt": {"help_text": "subject_hash = sha256(salt + subject_value); give it to whoever must verify the erasure."},
        }

    def get_archive_expires_at(self, request) -> str | None:
        archive = getattr(request, "archive", None)
        return archive.expires_at.isoformat() if archive is not None else None


class DataSubjectRequestInput(StrictSerializer):
    kind = serializers.ChoiceField(choices=RequestKind.choices)
    subject_kind = serializers.ChoiceField(choices=SubjectKind.choices)
    subject_value = serializers.CharField(max_length=services.SUBJECT_MAX_LENGTH, trim_whitespace=True)
    due_days = serializers.IntegerField(required=False, help_text="Days until the request is due (default 30).")


class DataSubjectRequestListApi(OrgApi):
    required_role = {"GET": ADMIN, "POST": ADMIN}

    @extend_schema(responses=DataSubjectRequestOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.data_subject_request_list(org=self.org), DataSubjectRequestOutput)

    @extend_schema(request=DataSubjectRequestInput, responses={201: DataSubjectRequestOutput})
    def post(self, request, org):
        data = DataSubjectRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        filed = services.data_subject_request_file(
            org=self.org, actor=self.actor, filed_by=request.user, **data.validated_data
        )
        return Response(DataSubjectRequestOutput(filed).data, status=status.HTTP_201_CREATED)


class DataSubjectRequestDetailApi(OrgApi):
    required_role = {"GET": ADMIN}

    @extend_schema(responses=DataSubjectRequestOutput)
    def get(self, request, org, request_id):
        found = selectors.data_subject_request_get(org=self.org, request_id=request_id)
        return Response(DataSubjectRequestOutput(found).data)


class DataSubjectArchiveApi(OrgApi):
    required_role = {"GET": ADMIN}

    @extend_schema(
        responses={
            200: OpenApiResponse(
                description="The archive: JSON with `manifest` (source, table, count, fields) and `records`."
            ),
            409: OpenApiResponse(description="Not an access request, or not done yet."),
            410: OpenApiResponse(description="The archive expired and was deleted."),
        },
    )
    def get(self, request, org, request_id):
        found = selectors.data_subject_request_get(org=self.org, request_id=request_id)
        content = services.data_subject_archive_download(org=self.org, request=found, actor=self.actor)
        response = Response(content)
        response["Content-Disposition"] = f'attachment; filename="data-subject-{found.id}.json"'
        response["Cache-Control"] = "no-store"
        return response
