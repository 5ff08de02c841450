import datetime

import pytest
from django.utils import timezone

from accounts.models import AdminToken, UserSession
from accounts.services import admin_token_create
from audit.models import AuditEvent
from privacy import services
from privacy.models import DataSubjectArchive, DataSubjectRequest, RequestStatus
from privacy.tasks import data_subject_request_run_task
from requestlogs.models import RequestLog
from spend.models import SpendEntry
from tenants.context import org_context
from tenants.models import Membership, Role, TeamMembership
from tenants.services import team_create, team_member_add
from tests.conftest import SYSTEM
from tests.privacy.conftest import logs_write, spend_write

pytestmark = pytest.mark.django_db


def file_and_run(org, kind: str, subject_kind: str, value: str) -> DataSubjectRequest:
    with org_context(org.id):
        request = services.data_subject_request_file(org=org, kind=kind, subject_kind=subject_kind, subject_value=value,
                                                     actor=SYSTEM)
    services.data_subject_request_run(org=org, request_id=request.id, actor=SYSTEM)
    with org_context(org.id):
        return DataSubjectRequest.objects.get(id=request.id)


def archive_of(org, request) -> dict:
    with org_context(org.id):
        return DataSubjectArchive.objects.get(request=request).content


def manifest_counts(content: dict) -> dict[str, int]:
    return {f"{entry['source']}:{entry['table']}": entry["count"] for entry in content["manifest"]}


def test_access_by_end_user_archives_logs_findings_and_spend_of_this_org_only(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    logs_write(a, "alice", 2, guardrail={"pii": {"email": 1}})
    logs_write(a, "ALICE")  # another spelling of the same id
    logs_write(a, "bob")
    logs_write(b, "alice", 3)
    spend_write(a, "alice", 2500)
    request = file_and_run(a, "access", "end_user", "alice")

    assert request.status == RequestStatus.DONE and request.finished_at is not None
    content = archive_of(a, request)
    counts = manifest_counts(content)
    assert counts["request_logs:requestlogs_requestlog"] == 3
    assert counts["guardrail_findings:requestlogs_requestlog"] == 2
    assert counts["spend:spend_spendentry"] == 1
    assert counts["access_archives:privacy_datasubjectarchive"] == 0
    assert not any(key.startswith("console_account") for key in counts)  # not a console user of the org
    assert {row["end_user"] for row in content["records"]["request_logs"]} == {"alice", "ALICE"}
    assert content["records"]["request_logs"][0]["request_text"] == "my secret prompt"
    assert content["records"]["spend"][0]["cost_microusd"] == 2500
    for entry in content["manifest"]:
        assert set(entry) >= {"source", "table", "count", "fields"}
    with org_context(a.id):
        event = AuditEvent.objects.get(action="privacy.access.completed", target_id=str(request.id))
    assert "alice" not in str(event.changes)


def test_unknown_subject_completes_with_an_empty_archive(org_a):
    a, _ = org_a
    request = file_and_run(a, "access", "email", "nobody@nowhere.example")
    assert request.status == RequestStatus.DONE
    assert all(count == 0 for count in manifest_counts(archive_of(a, request)).values())


def test_another_orgs_console_user_is_not_found_and_not_revealed(org_a, org_b, add_member):
    (a, _), (b, _) = org_a, org_b
    outsider = add_member(b, "member", email="outsider@b.example")
    by_email = file_and_run(a, "access", "email", "outsider@b.example")
    by_id = file_and_run(a, "erasure", "user", str(outsider.id))
    for request in (by_email, by_id):
        assert request.status == RequestStatus.DONE
    assert not any(manifest_counts(archive_of(a, by_email)).values())
    assert not any(by_id.counts.values())
    outsider.refresh_from_db()
    assert outsider.email == "outsider@b.example" and outsider.is_active
    with org_context(b.id):
        assert Membership.objects.filter(org=b, user=outsider).exists()


def test_access_by_console_user_lists_account_memberships_tokens(org_a, add_member):
    a, owner = org_a
    member = add_member(a, "admin", email="carol@a.example")
    with org_context(a.id):
        team = team_create(org=a, slug="ml", name="ML", actor=SYSTEM)
        team_member_add(org=a, team=team, membership=Membership.objects.get(user=member), is_team_admin=True, actor=SYSTEM)
        admin_token_create(org=a, user=member, name="ci", role=Role.ADMIN, acting_role=Role.OWNER, expires_at=None,
                           actor=SYSTEM)
    logs_write(a, "carol@a.example")
    request = file_and_run(a, "access", "user", str(member.id))
    content = archive_of(a, request)
    counts = manifest_counts(content)
    assert counts["console_account:accounts_user"] == 1
    assert counts["console_account:tenants_membership"] == 1
    assert counts["console_account:tenants_teammembership"] == 1
    assert counts["console_account:accounts_admintoken"] == 1
    assert counts["request_logs:requestlogs_requestlog"] == 1  # the email was sent as the end-user id
    assert content["records"]["accounts_user"][0]["email"] == "carol@a.example"
    assert "secret_hash" not in content["records"]["accounts_admintoken"][0]


def test_erasure_pseudonymises_logs_and_spend_and_proves_itself_without_the_identifier(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    logs_write(a, "alice", 3)
    logs_write(a, "bob")
    logs_write(b, "alice")
    spend_write(a, "alice", 700)
    request = file_and_run(a, "erasure", "end_user", "alice")

    assert request.status == RequestStatus.DONE
    assert request.subject_value == "" and request.resolution == {}
    assert request.counts == {"requestlogs_requestlog": 3, "spend_spendentry": 1, "privacy_datasubjectarchive": 0,
                              "privacy_datasubjectrequest": 0}
    with org_context(a.id):
        assert not RequestLog.objects.filter(end_user__iexact="alice").exists()
        erased = RequestLog.objects.filter(end_user=f"erased:{request.subject_hash[:32]}")
        assert erased.count() == 3
        assert not erased.exclude(request_text=None, response_text=None, client_ip=None).exists()
        assert sum(erased.values_list("prompt_tokens", flat=True)) == 30  # usage figures survive
        assert RequestLog.objects.get(end_user="bob").request_text == "my secret prompt"
        spend = SpendEntry.objects.get(org=a)
        assert spend.end_user.startswith("erased:") and spend.cost_microusd == 700
        event = AuditEvent.objects.get(action="privacy.erasure.completed")
    with org_context(b.id):
        assert RequestLog.objects.filter(end_user="alice").count() == 1  # another org's data is its own
    assert "alice" not in str(event.changes) and "prompt" not in str(event.changes)
    proof = services.subject_identifier_hash(salt=request.salt, identifier="alice")
    assert event.changes["identifier_hashes"][1] == [proof] and proof == request.subject_hash
    assert event.changes["counts"][1]["requestlogs_requestlog"] == 3


def test_a_second_erasure_of_the_same_subject_finds_nothing_and_completes(org_a):
    a, _ = org_a
    logs_write(a, "alice", 2)
    file_and_run(a, "erasure", "end_user", "alice")
    again = file_and_run(a, "erasure", "end_user", "alice")
    assert again.status == RequestStatus.DONE and not any(again.counts.values())
    # Running a finished request again changes nothing and records nothing.
    assert services.data_subject_request_run(org=a, request_id=again.id, actor=SYSTEM) is None
    with org_context(a.id):
        assert AuditEvent.objects.filter(action="privacy.erasure.completed").count() == 2


def test_erasure_of_a_sole_org_console_user_pseudonymises_the_account(org_a, add_member, client):
    a, _ = org_a
    member = add_member(a, "member", email="dave@a.example")
    client.force_login(member)
    with org_context(a.id):
        admin_token_create(org=a, user=member, name="ci", role=Role.MEMBER, acting_role=Role.OWNER, expires_at=None,
                           actor=SYSTEM)
    logs_write(a, "dave@a.example", 2)
    request = file_and_run(a, "erasure", "email", "Dave@A.example")

    member.refresh_from_db()
    assert member.email.endswith("@erased.invalid") and "dave" not in member.email
    assert not member.is_active and not member.has_usable_password() and member.name == ""
    assert not UserSession.objects.filter(user=member).exists()
    with org_context(a.id):
        assert not Membership.objects.filter(user=member).exists()
        assert not AdminToken.objects.filter(user=member).exists()
        assert not RequestLog.objects.filter(end_user__icontains="dave").exists()
    assert request.counts["tenants_membership"] == 1 and request.counts["accounts_user"] == 1
    assert request.counts["requestlogs_requestlog"] == 2


def test_erasure_of_a_user_of_two_orgs_removes_only_this_orgs_membership(org_a, org_b, add_member):
    (a, _), (b, _) = org_a, org_b
    both = add_member(a, "member", email="erin@both.example")
    add_member(b, "member", email="erin@both.example")
    with org_context(a.id):
        team = team_create(org=a, slug="ml", name="ML", actor=SYSTEM)
        team_member_add(org=a, team=team, membership=Membership.objects.get(user=both), is_team_admin=False, actor=SYSTEM)
    logs_write(b, "erin@both.example")
    request = file_and_run(a, "erasure", "user", str(both.id))

    both.refresh_from_db()
    assert both.email == "erin@both.example" and both.is_active  # still org B's member
    assert "accounts_user" not in request.counts
    with org_context(a.id):
        assert not Membership.objects.filter(user=both).exists()
        assert not TeamMembership.objects.filter(membership__user=both).exists()
    with org_context(b.id):
        assert Membership.objects.filter(user=both).exists()
        assert RequestLog.objects.filter(end_user="erin@both.example").exists()


def test_erasing_the_last_owner_fails_with_a_clear_error(org_a):
    a, owner = org_a
    with org_context(a.id):
        request = services.data_subject_request_file(org=a, kind="erasure", subject_kind="user",
                                                     subject_value=str(owner.id), actor=SYSTEM)
    assert data_subject_request_run_task.apply(args=[str(a.id), str(request.id)]).get() == "failed"
    with org_context(a.id):
        request.refresh_from_db()
        assert Membership.objects.filter(user=owner, role=Role.OWNER).exists()
        assert AuditEvent.objects.filter(action="privacy.request.fail", target_id=str(request.id)).exists()
    assert request.status == RequestStatus.FAILED and "last owner" in request.error


def test_an_erasure_deletes_earlier_access_archives_of_the_subject(org_a):
    a, _ = org_a
    logs_write(a, "alice")
    access = file_and_run(a, "access", "end_user", "alice")
    erasure = file_and_run(a, "erasure", "end_user", "alice")
    assert erasure.counts["privacy_datasubjectarchive"] == 1
    with org_context(a.id):
        access.refresh_from_db()
        assert not DataSubjectArchive.objects.exists()
    assert access.subject_value == "" and access.status == RequestStatus.DONE


@pytest.mark.parametrize("fields, field", [
    ({"kind": "delete"}, "kind"),
    ({"subject_kind": "phone"}, "subject_kind"),
    ({"subject_value": "   "}, "subject_value"),
    ({"subject_value": ""}, "subject_value"),
    ({"subject_kind": "email", "subject_value": "not-an-email"}, "subject_value"),
    ({"subject_kind": "user", "subject_value": "12ab"}, "subject_value"),
    ({"subject_kind": "user", "subject_value": "0"}, "subject_value"),
    ({"subject_value": "x" * 257}, "subject_value"),
    ({"due_days": 0}, "due_days"),
    ({"due_days": 91}, "due_days"),
])
def test_bad_requests_are_refused_and_nothing_is_filed(org_a, fields, field):
    from config.errors import ValidationFailed

    a, _ = org_a
    arguments = {"kind": "access", "subject_kind": "end_user", "subject_value": "alice"} | fields
    with org_context(a.id), pytest.raises(ValidationFailed) as refused:
        services.data_subject_request_file(org=a, actor=SYSTEM, **arguments)
    assert refused.value.field == field
    with org_context(a.id):
        assert not DataSubjectRequest.objects.exists()


def test_overdue_requests_are_flagged_once_with_audit_and_webhook(org_a, django_capture_on_commit_callbacks):
    a, _ = org_a
    with org_context(a.id):
        late = services.data_subject_request_file(org=a, kind="access", subject_kind="end_user", subject_value="x",
                                                  actor=SYSTEM, due_days=1)
        on_time = services.data_subject_request_file(org=a, kind="access", subject_kind="end_user", subject_value="y",
                                                     actor=SYSTEM, due_days=5)
        later = timezone.now() + datetime.timedelta(days=2)
        with django_capture_on_commit_callbacks() as callbacks:
            assert services.data_subject_requests_flag_overdue(org=a, actor=SYSTEM, now=later) == 1
        assert services.data_subject_requests_flag_overdue(org=a, actor=SYSTEM, now=later) == 0
        late.refresh_from_db()
        on_time.refresh_from_db()
        assert late.overdue_at == later and on_time.overdue_at is None
        assert AuditEvent.objects.filter(action="privacy.request.overdue").count() == 1
    assert len(callbacks) == 1  # the webhook delivery, queued after commit


def test_stalled_runs_are_resumed_and_live_ones_left_alone(org_a, settings, django_capture_on_commit_callbacks):
    a, _ = org_a
    with org_context(a.id):
        stalled = services.data_subject_request_file(org=a, kind="access", subject_kind="end_user", subject_value="x",
                                                     actor=SYSTEM)
        DataSubjectRequest.objects.filter(id=stalled.id).update(
            status=RequestStatus.RUNNING, heartbeat_at=timezone.now() - datetime.timedelta(hours=1)
        )
        fresh = services.data_subject_request_file(org=a, kind="access", subject_kind="end_user", subject_value="y",
                                                   actor=SYSTEM)
        DataSubjectRequest.objects.filter(id=fresh.id).update(status=RequestStatus.RUNNING, heartbeat_at=timezone.now())
        with django_capture_on_commit_callbacks() as callbacks:
            assert services.data_subject_requests_resume_stalled(org=a) == 1
    assert len(callbacks) == 1


def test_expired_archives_are_deleted_by_the_cleanup(org_a):
    a, _ = org_a
    request = file_and_run(a, "access", "end_user", "alice")
    with org_context(a.id):
        assert services.data_subject_archives_expire(org=a, actor=SYSTEM) == 0
        later = timezone.now() + datetime.timedelta(days=8)
        assert services.data_subject_archives_expire(org=a, actor=SYSTEM, now=later) == 1
        assert not DataSubjectArchive.objects.filter(request=request).exists()
        assert AuditEvent.objects.filter(action="privacy.archive.expire").exists()


def test_a_run_that_never_finishes_is_given_up_after_its_attempts(org_a):
    a, _ = org_a
    with org_context(a.id):
        request = services.data_subject_request_file(org=a, kind="erasure", subject_kind="end_user",
                                                     subject_value="alice", actor=SYSTEM)
        DataSubjectRequest.objects.filter(id=request.id).update(status=RequestStatus.RUNNING,
                                                                attempts=services.RUN_ATTEMPTS_MAX)
    assert services.data_subject_request_run(org=a, request_id=request.id, actor=SYSTEM) is None
    with org_context(a.id):
        request.refresh_from_db()
    assert request.status == RequestStatus.FAILED and "gave up" in request.error


def test_row_level_security_hides_another_orgs_requests_and_archives_even_unscoped(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    file_and_run(a, "access", "end_user", "alice")
    file_and_run(b, "access", "end_user", "alice")
    with org_context(a.id):
        assert set(DataSubjectRequest.dangerously_unscoped.values_list("org_id", flat=True)) == {a.id}
        assert set(DataSubjectArchive.dangerously_unscoped.values_list("org_id", flat=True)) == {a.id}
    assert not DataSubjectRequest.dangerously_unscoped.exists()  # no org context: nothing at all
