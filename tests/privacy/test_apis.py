import datetime
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from privacy import services
from privacy.models import DataSubjectArchive, DataSubjectRequest
from tenants.context import org_context
from tests.conftest import SYSTEM
from tests.privacy.conftest import logs_write

pytestmark = pytest.mark.django_db


def url(org, *parts, slash: bool = True) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, "privacy-requests", *map(str, parts)]) + ("/" if slash else "")


def archive_url(org, request_id) -> str:
    return url(org, request_id, "archive", slash=False)


def run(org, request_id) -> None:
    services.data_subject_request_run(org=org, request_id=request_id, actor=SYSTEM)


def test_an_admin_files_an_access_request_follows_it_and_downloads_the_archive(org_a, api_as):
    a, owner = org_a
    logs_write(a, "alice", 2)
    client = api_as(owner)
    response = client.post(url(a), {"kind": "access", "subject_kind": "end_user", "subject_value": " alice "},
                           format="json")
    assert response.status_code == 201, response.json()
    filed = response.json()
    assert filed["status"] == "received" and filed["subject_value"] == "alice" and filed["filed_by"] == owner.email
    due = datetime.datetime.fromisoformat(filed["due_at"]) - datetime.datetime.fromisoformat(filed["filed_at"])
    assert due == datetime.timedelta(days=30)

    assert client.get(archive_url(a, filed["id"])).status_code == 409  # not run yet
    run(a, filed["id"])
    detail = client.get(url(a, filed["id"])).json()
    assert detail["status"] == "done" and detail["archive_expires_at"] is not None
    assert [r["id"] for r in client.get(url(a)).json()["results"]] == [filed["id"]]

    download = client.get(archive_url(a, filed["id"]))
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="data-subject-{filed["id"]}.json"'
    body = download.json()
    assert body["format"] == services.ARCHIVE_FORMAT
    assert len(body["records"]["request_logs"]) == 2
    with org_context(a.id):
        assert AuditEvent.objects.filter(action="privacy.archive.download", target_id=filed["id"]).count() == 1
        assert DataSubjectArchive.objects.get(request_id=filed["id"]).downloads == 1


def test_the_archive_is_gone_after_it_expires(org_a, api_as):
    a, owner = org_a
    with org_context(a.id):
        request = services.data_subject_request_file(org=a, kind="access", subject_kind="end_user",
                                                     subject_value="alice", actor=SYSTEM)
    run(a, request.id)
    with org_context(a.id):
        DataSubjectArchive.objects.filter(request=request).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    response = api_as(owner).get(archive_url(a, request.id))
    assert response.status_code == 410
    assert "expired" in response.json()["detail"] and response.json()["code"] == "gone"
    with org_context(a.id):  # after the cleanup it is gone for good, with the same answer
        services.data_subject_archives_expire(org=a, actor=SYSTEM)
    assert api_as(owner).get(archive_url(a, request.id)).status_code == 410


def test_an_erasure_request_has_no_archive(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    filed = client.post(url(a), {"kind": "erasure", "subject_kind": "end_user", "subject_value": "alice"},
                        format="json").json()
    run(a, filed["id"])
    detail = client.get(url(a, filed["id"])).json()
    assert detail["status"] == "done" and detail["subject_value"] == "" and len(detail["subject_hash"]) == 64
    response = client.get(archive_url(a, filed["id"]))
    assert response.status_code == 409 and "erasure" in response.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"kind": "rectify", "subject_kind": "end_user", "subject_value": "a"}, "kind"),
    ({"kind": "access", "subject_kind": "ip", "subject_value": "a"}, "subject_kind"),
    ({"kind": "access", "subject_kind": "end_user", "subject_value": ""}, "subject_value"),
    ({"kind": "access", "subject_kind": "end_user", "subject_value": "   "}, "subject_value"),
    ({"kind": "access", "subject_kind": "end_user"}, "subject_value"),
    ({"kind": "access", "subject_kind": "email", "subject_value": "nope"}, "subject_value"),
    ({"kind": "access", "subject_kind": "user", "subject_value": "abc"}, "subject_value"),
    ({"kind": "access", "subject_kind": "end_user", "subject_value": "a", "due_days": 0}, "due_days"),
    ({"kind": "access", "subject_kind": "end_user", "subject_value": "a", "org": "other"}, "org"),
])
def test_bad_input_is_a_400_naming_the_field(org_a, api_as, body, field):
    a, owner = org_a
    response = api_as(owner).post(url(a), body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()
    with org_context(a.id):
        assert not DataSubjectRequest.objects.exists()


def test_members_and_viewers_may_not_file_or_read(org_a, add_member, api_as):
    a, owner = org_a
    with org_context(a.id):
        request = services.data_subject_request_file(org=a, kind="access", subject_kind="end_user",
                                                     subject_value="alice", actor=SYSTEM)
    for role in ("member", "viewer"):
        client = api_as(add_member(a, role))
        assert client.post(url(a), {"kind": "access", "subject_kind": "end_user", "subject_value": "x"},
                           format="json").status_code == 403
        assert client.get(url(a)).status_code == 403
        assert client.get(url(a, request.id)).status_code == 403
        assert client.get(archive_url(a, request.id)).status_code == 403


def test_another_orgs_requests_are_not_found(org_a, org_b, api_as):
    (a, owner_a), (b, owner_b) = org_a, org_b
    with org_context(b.id):
        theirs = services.data_subject_request_file(org=b, kind="access", subject_kind="end_user",
                                                    subject_value="alice", actor=SYSTEM)
    run(b, theirs.id)
    client = api_as(owner_a)
    assert client.get(url(a)).json()["results"] == []
    assert client.get(url(a, theirs.id)).status_code == 404
    assert client.get(archive_url(a, theirs.id)).status_code == 404
    assert client.get(url(a, uuid.uuid4())).status_code == 404
    assert client.get(url(a, "not-a-uuid")).status_code == 404
    assert client.get(url(b)).status_code == 404  # not a member of org B
