from django.db.models import QuerySet

from config.errors import NotFound
from privacy.models import DataSubjectRequest
from tenants.models import Org
from tenants.selectors import uuid_or_not_found


def data_subject_request_list(*, org: Org) -> QuerySet[DataSubjectRequest]:
    requests = DataSubjectRequest.objects.filter(org=org).select_related("filed_by", "archive")
    return requests.defer("archive__content").order_by("-filed_at")


def data_subject_request_get(*, org: Org, request_id) -> DataSubjectRequest:
    found = data_subject_request_list(org=org).filter(id=uuid_or_not_found(request_id, "Request")).first()
    if found is None:
        raise NotFound("Data-subject request not found.")
    return found
