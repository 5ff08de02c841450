"""The per-org hash chain: numbering, signatures, and verification catching each kind of tampering.

Tampering goes through the documented maintenance session (the only way past the append-only
triggers short of dropping them), on committed rows, as an attacker with database access would."""
import threading
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import chain
from audit.actors import Actor
from audit.chain import GENESIS_HASH, Tampering
from audit.models import AuditEvent, AuditVerification
from audit.services import audit_chain_verify, audit_event_record
from audit.tasks import audit_verify_for_org
from tenants.context import org_context
from tests.audit.conftest import events_record, maintenance_session
from tests.conftest import SYSTEM


def verify(org, *, anchored: bool = False) -> chain.ChainReport:
    with org_context(org.id):
        if anchored:
            return audit_chain_verify(org=org, actor=SYSTEM)
        return chain.chain_verify(org_id=org.id)


def stored(org) -> list[AuditEvent]:
    with org_context(org.id):
        return list(AuditEvent.objects.filter(org=org).order_by("seq"))


def renumber(cursor, org, *, from_seq: int, by: int) -> None:
    """Shifts seq >= from_seq by `by`, through negative numbers because (org, seq) is unique."""
    cursor.execute("UPDATE audit_auditevent SET seq = -seq WHERE org_id = %s AND seq >= %s", [org.id, from_seq])
    cursor.execute("UPDATE audit_auditevent SET seq = -seq + %s WHERE org_id = %s AND seq < 0", [by, org.id])


def forged_insert(cursor, org, *, seq: int, prev_hash: str) -> None:
    cursor.execute(
        """INSERT INTO audit_auditevent (id, org_id, seq, prev_hash, hash, created_at, actor_kind, actor_label, action,
                                         target_type, target_id, changes, user_agent, request_id)
           VALUES (%s, %s, %s, %s, %s, now(), 'user', 'someone@example.com', 'member.role_change', '', '', '{}', '', '')""",
        [uuid.uuid4(), org.id, seq, prev_hash, "f" * 64],
    )


# Numbering and signatures ---------------------------------------------------------------

@pytest.mark.django_db
def test_events_are_numbered_per_org_and_linked(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    events_record(a, 3)
    events_record(b, 1)
    events = stored(a)
    assert [event.seq for event in events] == [1, 2, 3, 4, 5]  # org.create and member.add came first
    assert events[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:]))
    assert [event.seq for event in stored(b)] == [1, 2, 3]
    assert verify(a).ok and verify(a).events_checked == 5 and verify(a).head_hash == events[-1].hash


@pytest.mark.django_db
def test_the_signature_covers_every_field(org_a):
    a, _ = org_a
    event = events_record(a, 1)[0]
    values = {name: getattr(event, name) for name in chain.EVENT_FIELDS}
    assert chain.mac(values) == event.hash
    for name, other in [("org_id", uuid.uuid4()), ("seq", event.seq + 1), ("prev_hash", "1" * 64), ("action", "x"),
                        ("changes", {"n": [None, 1]}), ("actor_label", "other"), ("source_ip", "10.0.0.1"),
                        ("request_id", "other")]:
        assert chain.mac({**values, name: other}) != event.hash, name


@pytest.mark.django_db
def test_values_survive_the_round_trip_through_postgresql(org_a):
    """Signed from Python values, verified from what jsonb and inet give back."""
    a, _ = org_a
    actor = Actor(kind="user", user_id=7, label="ünïcode@example.com", ip="2001:db8:0:0:0:0:0:1",
                  user_agent="agent/1.0 ☃", request_id="req-1")
    changes = {
        "big": [1e20, 2.5e-7], "nested": {"list": [1.0, 0.1, -0, True, None], "text": "a\x00b"},
        "price": [None, 1.5], "when": [None, "2026-01-01T00:00:00+00:00"],
    }
    with org_context(a.id):
        audit_event_record(org_id=str(a.id).upper(), actor=actor, action="test.values", changes=changes)
        audit_event_record(org_id=a.id, actor=Actor(kind="user", ip="::ffff:192.0.2.1"), action="test.mapped")
    assert verify(a).ok, verify(a).message


def test_concurrent_writers_of_one_org_leave_no_gaps(committed_org):
    from django.db import connections

    errors = []

    def write():
        try:
            events_record(committed_org, 10)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [event.seq for event in stored(committed_org)] == list(range(1, 43))
    assert verify(committed_org).ok


@pytest.mark.django_db
def test_a_rolled_back_change_gives_its_number_back(org_a):
    a, _ = org_a
    with pytest.raises(RuntimeError):
        with org_context(a.id):
            audit_event_record(org_id=a.id, actor=SYSTEM, action="test.lost")
            raise RuntimeError("the change fails after its event was written")
    events_record(a, 1)
    assert [event.seq for event in stored(a)] == [1, 2, 3]
    assert verify(a).ok


# Tampering --------------------------------------------------------------------------------

def test_verification_catches_a_modified_field(committed_org):
    events_record(committed_org, 4)
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET changes = '{\"role\": [\"member\", \"owner\"]}' WHERE org_id = %s AND seq = 3",
            [committed_org.id],
        )
    report = verify(committed_org)
    assert (report.failure_seq, report.failure_kind) == (3, Tampering.MODIFIED)
    assert report.events_checked == 2


def test_verification_catches_a_modified_field_even_with_its_hash_rewritten(committed_org):
    events_record(committed_org, 4)
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET action = 'team.create', hash = %s WHERE org_id = %s AND seq = 4",
            ["a" * 64, committed_org.id],
        )
    report = verify(committed_org)
    assert (report.failure_seq, report.failure_kind) == (4, Tampering.MODIFIED)


def test_verification_catches_a_deleted_event(committed_org):
    events_record(committed_org, 4)
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE org_id = %s AND seq = 3", [committed_org.id])
    report = verify(committed_org)
    assert (report.failure_seq, report.failure_kind) == (3, Tampering.DELETED)
    assert "event 3 is missing" in report.message


def test_verification_catches_a_deleted_event_hidden_by_renumbering(committed_org):
    events_record(committed_org, 4)
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE org_id = %s AND seq = 3", [committed_org.id])
        renumber(cursor, committed_org, from_seq=4, by=-1)
    assert [event.seq for event in stored(committed_org)] == [1, 2, 3, 4, 5]
    report = verify(committed_org)
    assert (report.failure_seq, report.failure_kind) == (3, Tampering.DELETED)


def test_verification_catches_deleted_newest_events_against_the_last_verification(committed_org):
    events_record(committed_org, 4)
    assert verify(committed_org, anchored=True).ok
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE org_id = %s AND seq >= 5", [committed_org.id])
    assert verify(committed_org).ok, "without the anchor a cut tail looks like a shorter chain"
    report = verify(committed_org, anchored=True)
    assert (report.failure_seq, report.failure_kind) == (5, Tampering.DELETED)
    assert "newest events were deleted" in report.message


def test_verification_catches_an_inserted_forged_event(committed_org):
    events = events_record(committed_org, 4)
    with maintenance_session(committed_org.id) as cursor:
        renumber(cursor, committed_org, from_seq=4, by=1)
        forged_insert(cursor, committed_org, seq=4, prev_hash=events[0].hash)  # events[0] is seq 3
    report = verify(committed_org)
    assert (report.failure_seq, report.failure_kind) == (4, Tampering.INSERTED)


def test_verification_catches_a_forged_event_appended_at_the_end(committed_org):
    events = events_record(committed_org, 2)
    with maintenance_session(committed_org.id) as cursor:
        forged_insert(cursor, committed_org, seq=5, prev_hash=events[-1].hash)
    report = verify(committed_org)
    assert report.failure_seq == 5 and report.failure_kind in (Tampering.MODIFIED, Tampering.INSERTED)


def test_verification_catches_swapped_events(committed_org):
    events_record(committed_org, 4)
    with maintenance_session(committed_org.id) as cursor:
        for old, new in ((3, -1), (4, 3), (-1, 4)):
            cursor.execute("UPDATE audit_auditevent SET seq = %s WHERE org_id = %s AND seq = %s", [new, committed_org.id, old])
    report = verify(committed_org)
    assert (report.failure_seq, report.failure_kind) == (3, Tampering.REORDERED)


def test_verification_catches_an_event_copied_from_another_org(committed_org, make_org_committed):
    other = make_org_committed()
    with org_context(other.id):
        source = AuditEvent.objects.get(org=other, seq=1)
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute(
            """INSERT INTO audit_auditevent (id, org_id, seq, prev_hash, hash, created_at, actor_kind, actor_label,
                   action, target_type, target_id, changes, user_agent, request_id)
               SELECT %s, %s, 3, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s""",
            [uuid.uuid4(), committed_org.id, stored(committed_org)[-1].hash, source.hash, source.created_at,
             source.actor_kind, source.actor_label, source.action, source.target_type, source.target_id, "{}",
             source.user_agent, source.request_id],
        )
    report = verify(committed_org)
    assert report.failure_seq == 3 and not report.ok


@pytest.fixture
def make_org_committed(committed):
    from tenants.services import org_create
    from tests.conftest import unique_slug

    def make():
        org, _ = org_create(slug=unique_slug("other"), name="Other", data_region="us",
                            owner_email=f"{unique_slug('o')}@x.example", actor=SYSTEM)
        return org

    return make


# Recording, the command and the nightly task ---------------------------------------------

def test_audit_verify_command_reports_and_exits_non_zero_on_failure(committed_org, capsys):
    events_record(committed_org, 2)
    call_command("audit_verify", org=committed_org.slug)
    assert f"{committed_org.slug}: ok, 4 events" in capsys.readouterr().out
    with maintenance_session(committed_org.id) as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE org_id = %s AND seq = 2", [committed_org.id])
    with pytest.raises(CommandError, match=committed_org.slug):
        call_command("audit_verify", org=committed_org.slug)
    assert "FAILED at event 2 (deleted)" in capsys.readouterr().out
    with org_context(committed_org.id):
        outcomes = list(AuditVerification.objects.order_by("created_at").values_list("ok", "failure_seq", "failure_kind"))
    assert outcomes == [(True, None, ""), (False, 2, "deleted")]


@pytest.mark.django_db
def test_audit_verify_command_rejects_an_unknown_org():
    with pytest.raises(CommandError, match="Unknown org"):
        call_command("audit_verify", org="no-such-org")


@pytest.mark.django_db
def test_the_nightly_task_records_a_signed_outcome(org_a, settings):
    a, _ = org_a
    assert settings.CELERY_BEAT_SCHEDULE["audit-verify"]["task"] == "audit.tasks.audit_verify_all_orgs"
    assert audit_verify_for_org.apply(args=[str(a.id)]).get() is True
    with org_context(a.id):
        verification = AuditVerification.objects.get(org=a)
    assert verification.ok and verification.head_seq == 2 and verification.actor_label == "audit.tasks.audit_verify_for_org"
    assert chain.verification_is_signed(verification)
    verification.message = "changed"
    assert not chain.verification_is_signed(verification)


@pytest.mark.django_db
def test_a_forged_anchor_is_ignored(org_a):
    a, _ = org_a
    with org_context(a.id):
        forged = AuditVerification.objects.create(org=a, ok=True, head_seq=99, head_hash="b" * 64, hash="c" * 64)
        assert forged.id
        assert audit_chain_verify(org=a, actor=SYSTEM).ok


@pytest.mark.django_db
def test_signing_needs_the_key(org_a, settings):
    from django.core.exceptions import ImproperlyConfigured

    from audit.checks import check_audit_hmac_key

    a, _ = org_a
    settings.GATEHOUSE_AUDIT_HMAC_KEY = ""
    assert [error.id for error in check_audit_hmac_key()] == ["audit.E001"]
    with pytest.raises(ImproperlyConfigured, match="GATEHOUSE_AUDIT_HMAC_KEY"):
        events_record(a, 1)


@pytest.mark.django_db
def test_a_different_key_fails_verification_from_the_first_event(org_a, settings):
    a, _ = org_a
    settings.GATEHOUSE_AUDIT_HMAC_KEY = "another key"
    report = verify(a)
    assert (report.failure_seq, report.failure_kind) == (1, Tampering.MODIFIED)
