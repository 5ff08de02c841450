"""Data-subject requests (GDPR Art. 15, 17, 20): filing, running, and the housekeeping around them.

A run is a sequence of short transactions, each entered with the org's context and each holding the
request row's lock, so two runners (a redelivered message and a resumed one) take turns instead of
racing: start (resolve the subject once), then for an erasure one committed batch per step through
`privacy.sources.SUBJECT_DATA_SOURCES`, then the end (status, archive or audit event), exactly once.
Killed anywhere, a run is finished by running it again.
"""
import datetime
import hashlib
import logging
import secrets
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import Conflict, Gone, ValidationFailed
from privacy.models import DataSubjectArchive, DataSubjectRequest, RequestKind, RequestStatus, SubjectKind
from privacy.sources import SUBJECT_DATA_SOURCES, Subject
from tenants.context import org_context
from tenants.models import Membership, Org
from tenants.selectors import memberships_of_user_dangerously_unscoped
from tenants.webhooks import org_webhook_notify

logger = logging.getLogger(__name__)
User = get_user_model()

SUBJECT_MAX_LENGTH = 256
DUE_DAYS_MAX = 90  # GDPR Art. 12(3): one month, extendable by two more
ARCHIVE_FORMAT = "gatehouse.data-subject-archive/1"
OPEN_STATUSES = (RequestStatus.RECEIVED, RequestStatus.RUNNING)
RUN_ATTEMPTS_MAX = 10


def subject_identifier_hash(*, salt: str, identifier: str) -> str:
    """SHA-256 of the request's salt followed by the identifier (UTF-8), as hex: what the erasure's audit
    event holds instead of the identifier. Given the salt, anyone holding the identifier can check it."""
    return hashlib.sha256((salt + identifier).encode()).hexdigest()


def _subject_value_normalize(*, subject_kind: str, subject_value) -> str:
    if not isinstance(subject_value, str) or not subject_value.strip():
        raise ValidationFailed("Name the subject: a non-empty end-user id, email address or console user id.",
                               field="subject_value")
    value = subject_value.strip()
    if len(value) > SUBJECT_MAX_LENGTH:
        raise ValidationFailed(f"Use at most {SUBJECT_MAX_LENGTH} characters.", field="subject_value")
    if subject_kind == SubjectKind.EMAIL:
        try:
            validate_email(value)
        except DjangoValidationError:
            raise ValidationFailed("Enter a valid email address.", field="subject_value") from None
        return value.lower()
    if subject_kind == SubjectKind.USER and (not value.isascii() or not value.isdigit() or int(value) < 1):
        raise ValidationFailed("A console user id is a positive whole number.", field="subject_value")
    return str(int(value)) if subject_kind == SubjectKind.USER else value


@transaction.atomic
def data_subject_request_file(
    *, org: Org, kind: str, subject_kind: str, subject_value: str, actor: Actor, filed_by=None, due_days: int | None = None,
) -> DataSubjectRequest:
    """Records the request and queues its run after commit. The audit event names the subject only by hash."""
    if kind not in RequestKind.values:
        raise ValidationFailed(f"Unknown request kind {kind!r}; use one of {', '.join(RequestKind.values)}.", field="kind")
    if subject_kind not in SubjectKind.values:
        raise ValidationFailed(
            f"Unknown subject kind {subject_kind!r}; use one of {', '.join(SubjectKind.values)}.", field="subject_kind"
        )
    value = _subject_value_normalize(subject_kind=subject_kind, subject_value=subject_value)
    due_days = settings.GATEHOUSE_DSR_DUE_DAYS if due_days is None else due_days
    if isinstance(due_days, bool) or not isinstance(due_days, int) or not 1 <= due_days <= DUE_DAYS_MAX:
        raise ValidationFailed(f"Use a whole number of days from 1 to {DUE_DAYS_MAX}.", field="due_days")
    salt = secrets.token_hex(16)
    now = timezone.now()
    request = DataSubjectRequest.objects.create(
        org=org, kind=kind, subject_kind=subject_kind, subject_value=value, salt=salt,
        subject_hash=subject_identifier_hash(salt=salt, identifier=value), filed_by=filed_by, filed_at=now,
        due_at=now + datetime.timedelta(days=due_days),
    )
    audit_event_record(
        org_id=org.id, actor=actor, action="privacy.request.file", target=request,
        changes={"kind": [None, kind], "subject_kind": [None, subject_kind], "subject_hash": [None, request.subject_hash],
                 "due_at": [None, request.due_at.isoformat()]},
    )
    _run_queue(org_id=org.id, request_id=request.id)
    return request


def _run_queue(*, org_id, request_id) -> None:
    from privacy.tasks import data_subject_request_run_task

    transaction.on_commit(lambda: data_subject_request_run_task.delay(str(org_id), str(request_id)))


# Running -------------------------------------------------------------------------------------

def _subject_resolve(*, org: Org, request: DataSubjectRequest) -> dict:
    """Who the subject is in this org. A console user counts only as a member of this org: another org's
    user is simply not found, exactly like someone who never existed."""
    value = request.subject_value
    user = None
    if request.subject_kind == SubjectKind.EMAIL:
        user = User.objects.filter(email__iexact=value).first()
    elif request.subject_kind == SubjectKind.USER:
        user = User.objects.filter(id=int(value)).first()
    if user is not None and not Membership.objects.filter(org=org, user=user).exists():
        user = None
    end_users = {value} if request.subject_kind != SubjectKind.USER else set()
    other_orgs = False
    if user is not None:
        end_users.add(user.email)
        other_orgs = any(m.org_id != org.id for m in memberships_of_user_dangerously_unscoped(user=user))
    return {"user_id": user.id if user else None, "email": user.email if user else None,
            "end_users": sorted(end_users), "other_orgs": other_orgs}


def _subject_of(request: DataSubjectRequest) -> Subject:
    resolution = request.resolution
    pseudonym = f"erased:{request.subject_hash[:32]}"
    return Subject(user_id=resolution["user_id"], end_users=tuple(resolution["end_users"]),
                   other_orgs=resolution["other_orgs"], pseudonym=pseudonym)


def _locked(*, org: Org, request_id) -> DataSubjectRequest | None:
    return DataSubjectRequest.objects.select_for_update().filter(org=org, id=request_id).first()


def _run_start(*, org: Org, request_id, actor: Actor) -> DataSubjectRequest | None:
    """Marks the request running and fixes its subject; None when there is nothing (left) to run."""
    with org_context(org.id):
        request = _locked(org=org, request_id=request_id)
        if request is None or request.status not in OPEN_STATUSES:
            return None
        if request.attempts >= RUN_ATTEMPTS_MAX:
            # A run that kills its worker every time (say, out of memory) must not be resumed for ever.
            data_subject_request_fail(org=org, request_id=request_id, actor=actor,
                                      error=f"gave up after {RUN_ATTEMPTS_MAX} attempts that did not finish")
            return None
        now = timezone.now()
        if not request.resolution:
            request.resolution = _subject_resolve(org=org, request=request)
        request.status = RequestStatus.RUNNING
        request.started_at = request.started_at or now
        request.heartbeat_at = now
        request.attempts += 1
        request.save(update_fields=["resolution", "status", "started_at", "heartbeat_at", "attempts"])
        return request


def data_subject_request_run(*, org: Org, request_id, actor: Actor) -> DataSubjectRequest | None:
    """Runs (or resumes) one request to its end; safe to call again at any point, also concurrently."""
    request = _run_start(org=org, request_id=request_id, actor=actor)
    if request is None:
        return None
    if request.kind == RequestKind.ACCESS:
        return _access_complete(org=org, request_id=request_id, actor=actor)
    _erasure_batches_run(org=org, request_id=request_id)
    if settings.GATEHOUSE_DSR_LATE_ROWS_SECONDS:
        time.sleep(settings.GATEHOUSE_DSR_LATE_ROWS_SECONDS)
        _erasure_batches_run(org=org, request_id=request_id)  # rows still buffered during the first pass
    return _erasure_complete(org=org, request_id=request_id, actor=actor)


def _access_complete(*, org: Org, request_id, actor: Actor) -> DataSubjectRequest | None:
    with org_context(org.id):
        request = _locked(org=org, request_id=request_id)
        if request is None or request.status != RequestStatus.RUNNING:
            return request
        subject = _subject_of(request)
        manifest, records = [], {}
        for source in SUBJECT_DATA_SOURCES:
            description = source.describe(org=org, subject=subject)
            manifest += description.manifest
            records |= description.records
        now = timezone.now()
        content = {
            "format": ARCHIVE_FORMAT, "org": org.slug, "request_id": str(request.id), "created_at": now.isoformat(),
            "subject": {"kind": request.subject_kind, "value": request.subject_value}, "manifest": manifest,
            "records": records,
        }
        expires_at = now + datetime.timedelta(days=settings.GATEHOUSE_DSR_ARCHIVE_DAYS)
        DataSubjectArchive.objects.update_or_create(
            org=org, request=request,
            defaults={"content": content, "created_at": now, "expires_at": expires_at, "downloads": 0},
        )
        request.counts = {f"{entry['source']}:{entry['table']}": entry["count"] for entry in manifest}
        _finish(request, now=now)
        audit_event_record(
            org_id=org.id, actor=actor, action="privacy.access.completed", target=request,
            changes={"counts": [None, request.counts], "archive_expires_at": [None, expires_at.isoformat()]},
        )
        return request


def _finish(request: DataSubjectRequest, *, now: datetime.datetime) -> None:
    request.status = RequestStatus.DONE
    request.finished_at = request.heartbeat_at = now
    request.error = ""
    request.save()


def _erasure_batches_run(*, org: Org, request_id) -> None:
    limit = settings.GATEHOUSE_DSR_BATCH_ROWS
    for source in SUBJECT_DATA_SOURCES:
        while True:
            with org_context(org.id):
                request = _locked(org=org, request_id=request_id)
                if request is None or request.status != RequestStatus.RUNNING:
                    return
                handled = source.erase_batch(org=org, subject=_subject_of(request), limit=limit)
                for table, count in handled.items():
                    request.counts[table] = request.counts.get(table, 0) + count
                request.heartbeat_at = timezone.now()
                request.save(update_fields=["counts", "heartbeat_at"])
            if not any(handled.values()):
                break
            # Spreads a large erasure's load (and gives a test the time to kill a worker mid-way).
            time.sleep(settings.GATEHOUSE_DSR_BATCH_PAUSE_SECONDS)


def _erasure_complete(*, org: Org, request_id, actor: Actor) -> DataSubjectRequest | None:
    """The proof of erasure: counts per table and salted hashes of the identifiers, never an identifier."""
    with org_context(org.id):
        request = _locked(org=org, request_id=request_id)
        if request is None or request.status != RequestStatus.RUNNING:
            return request
        resolution = request.resolution
        identifiers = {request.subject_value, *resolution["end_users"], *filter(None, [resolution.get("email")])}
        if resolution["user_id"] is not None:
            identifiers.add(f"user:{resolution['user_id']}")
        hashes = sorted(subject_identifier_hash(salt=request.salt, identifier=each) for each in identifiers)
        request.subject_value = ""
        request.resolution = {}
        _finish(request, now=timezone.now())
        audit_event_record(
            org_id=org.id, actor=actor, action="privacy.erasure.completed", target=request,
            changes={"counts": [None, request.counts], "identifier_hashes": [None, hashes],
                     "hash_method": [None, "sha256(salt + identifier), hex; the salt is on the request"]},
        )
        return request


def data_subject_request_fail(*, org: Org, request_id, error: str, actor: Actor) -> None:
    """Gives up on a request whose run cannot succeed (retries used up, the last owner of the org...)."""
    with org_context(org.id):
        request = _locked(org=org, request_id=request_id)
        if request is None or request.status not in OPEN_STATUSES:
            return
        request.status = RequestStatus.FAILED
        request.error = error[:500]
        request.finished_at = timezone.now()
        request.save(update_fields=["status", "error", "finished_at"])
        audit_event_record(org_id=org.id, actor=actor, action="privacy.request.fail", target=request,
                           changes={"status": [RequestStatus.RUNNING, RequestStatus.FAILED], "error": [None, request.error]})


# Housekeeping (beat) --------------------------------------------------------------------------

@transaction.atomic
def data_subject_requests_resume_stalled(*, org: Org, now: datetime.datetime | None = None) -> int:
    """Queues again every open request nobody has worked on for GATEHOUSE_DSR_STALL_SECONDS: a worker
    killed mid-run, a message lost before a worker took it. Call it inside `org_context`."""
    stalled_before = (now or timezone.now()) - datetime.timedelta(seconds=settings.GATEHOUSE_DSR_STALL_SECONDS)
    stalled = DataSubjectRequest.objects.filter(org=org, status__in=OPEN_STATUSES).filter(
        Q(heartbeat_at__lt=stalled_before) | Q(heartbeat_at__isnull=True, filed_at__lt=stalled_before)
    )
    request_ids = list(stalled.values_list("id", flat=True))
    for request_id in request_ids:
        _run_queue(org_id=org.id, request_id=request_id)
    return len(request_ids)


@transaction.atomic
def data_subject_requests_flag_overdue(*, org: Org, actor: Actor, now: datetime.datetime | None = None) -> int:
    """Flags open requests past their due date, once each: an audit event and the org's webhook."""
    now = now or timezone.now()
    overdue = DataSubjectRequest.objects.filter(org=org, status__in=OPEN_STATUSES, due_at__lt=now, overdue_at__isnull=True)
    count = 0
    for request in overdue.select_for_update():
        request.overdue_at = now
        request.save(update_fields=["overdue_at"])
        audit_event_record(org_id=org.id, actor=actor, action="privacy.request.overdue", target=request,
                           changes={"due_at": [None, request.due_at.isoformat()], "status": [None, request.status]})
        org_webhook_notify(org_id=org.id, event="privacy.request_overdue", payload={
            "request_id": str(request.id), "kind": request.kind, "status": request.status,
            "due_at": request.due_at.isoformat(),
        })
        count += 1
    return count


@transaction.atomic
def data_subject_archives_expire(*, org: Org, actor: Actor, now: datetime.datetime | None = None) -> int:
    deleted, _ = DataSubjectArchive.objects.filter(org=org, expires_at__lte=now or timezone.now()).delete()
    if deleted:
        audit_event_record(org_id=org.id, actor=actor, action="privacy.archive.expire", changes={"deleted": [None, deleted]})
    return deleted


# Download -------------------------------------------------------------------------------------

@transaction.atomic
def data_subject_archive_download(*, org: Org, request: DataSubjectRequest, actor: Actor) -> dict:
    """The archive's content, for an org admin, until it expires; each download is audited."""
    if request.kind != RequestKind.ACCESS:
        raise Conflict("Only an access request has an archive; this is an erasure request.")
    if request.status != RequestStatus.DONE:
        raise Conflict(f"The archive is not ready: the request is {request.status}.")
    archive = DataSubjectArchive.objects.select_for_update().filter(org=org, request=request).first()
    if archive is None or archive.expires_at <= timezone.now():
        raise Gone("The archive has expired and was deleted; file a new access request for a fresh copy.")
    archive.downloads += 1
    archive.save(update_fields=["downloads"])
    audit_event_record(org_id=org.id, actor=actor, action="privacy.archive.download", target=request,
                       changes={"downloads": [archive.downloads - 1, archive.downloads]})
    return archive.content
