from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.scoping import OrgOwnedModel


class RequestKind(models.TextChoices):
    ACCESS = "access", "Access (a copy of the data, GDPR Art. 15 and 20)"
    ERASURE = "erasure", "Erasure (GDPR Art. 17)"


class SubjectKind(models.TextChoices):
    END_USER = "end_user", "End-user id (the `user` field of proxied requests)"
    EMAIL = "email", "Email address"
    USER = "user", "Console user id"


class RequestStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class DataSubjectRequest(OrgOwnedModel):
    """A data-subject request filed by an org admin and carried out by a Celery task (privacy.tasks).

    `subject_value` names the subject in clear only while the request needs it: an erasure blanks it
    when it completes, leaving `subject_hash`, the SHA-256 of `salt` + the value, so that whoever is
    given the salt and the identifier can check which subject was erased."""

    kind = models.CharField(max_length=10, choices=RequestKind.choices)
    subject_kind = models.CharField(max_length=10, choices=SubjectKind.choices)
    subject_value = models.CharField(max_length=256, blank=True)
    salt = models.CharField(max_length=32)
    subject_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=RequestStatus.choices, default=RequestStatus.RECEIVED)
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    filed_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    # Written by every committed step of a run; a run whose heartbeat stops is resumed by the sweep.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    overdue_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Who the subject turned out to be in this org (console user id, end-user ids, other memberships),
    # fixed by the first run so that a resumed run erases exactly the same things; blanked when done.
    resolution = models.JSONField(default=dict, blank=True)
    # Rows handled per table, committed with each batch (so a resumed run keeps counting where it stopped).
    counts = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [models.Index(fields=["org", "status", "due_at"], name="dsr_org_status_due")]


class DataSubjectArchive(OrgOwnedModel):
    """The machine-readable result of an access request, downloadable by org admins until `expires_at`."""

    request = models.OneToOneField(DataSubjectRequest, on_delete=models.CASCADE, related_name="archive")
    content = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    downloads = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="dsr_archive_expiry")]
