from django.db.models import QuerySet

from privacy.models import DataSubjectRequest
from tenants.models import Org
from tenants.selectors import object_by_id_or_not_found


def data_subject_request_list(*, org: Org) -> QuerySet[DataSubjectRequest]:
    requests = DataSubjectRequest.objects.filter(org=org).select_related("filed_by", "archive")
    return requests.defer("archive__content").order_by("-filed_at")


def data_subject_request_get(*, org: Org, request_id) -> DataSubjectRequest:
    return object_by_id_or_not_found(data_subject_request_list(org=org), request_id, "Data-subject request")
