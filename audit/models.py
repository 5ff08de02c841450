"""The audit trail. All three tables are append-only in PostgreSQL (see docs/audit.md):
the application role may only SELECT and INSERT, and triggers reject UPDATE, DELETE and
TRUNCATE from anyone but the maintenance role."""
from auditlog.models import AbstractLogEntry, LogEntryManager
from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.actors import ActorKind, current_actor
from audit.masking import secrets_masked
from audit.origin import current_request_id
from tenants.scoping import OrgOwnedModel, OrgScopedManager

HASH_LENGTH = 64  # hex of HMAC-SHA256


class AuditEvent(OrgOwnedModel):
    """One state change or security event in an org, written by the service that made it, in its transaction.

    Events of an org form a hash chain: `seq` counts 1, 2, 3... without gaps, `prev_hash` is the
    `hash` of event `seq - 1`, and `hash` is the HMAC-SHA256 of the event's canonical form under
    GATEHOUSE_AUDIT_HMAC_KEY (see audit/chain.py).
    """

    seq = models.BigIntegerField()
    prev_hash = models.CharField(max_length=HASH_LENGTH)
    hash = models.CharField(max_length=HASH_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_token_id = models.UUIDField(null=True, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="Field: [before, after], secrets masked.")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "seq"], name="audit_event_seq_unique_per_org")]
        indexes = [
            models.Index(fields=["org", "created_at"]),
            models.Index(fields=["org", "action"]),
            models.Index(fields=["org", "target_type", "target_id"], name="audit_event_target"),
        ]


class AuditVerification(OrgOwnedModel):
    """The outcome of one walk of an org's chain (the nightly task or `manage.py audit_verify`).

    A passing walk's head (`head_seq`, `head_hash`) anchors the next walk: the chain must still
    hold that event, so deleting the newest events is caught too. `hash` is an HMAC of the row
    under the same key, so an anchor cannot be forged either.
    """

    created_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    events_checked = models.BigIntegerField(default=0)
    head_seq = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=HASH_LENGTH, blank=True)
    failure_seq = models.BigIntegerField(null=True, blank=True)
    failure_kind = models.CharField(max_length=16, blank=True)
    message = models.TextField(blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    hash = models.CharField(max_length=HASH_LENGTH)

    class Meta:
        indexes = [models.Index(fields=["org", "created_at"], name="audit_verification_time")]


class ChangeLogEntryManager(OrgScopedManager, LogEntryManager):
    """django-auditlog's manager, scoped to the org like every tenant manager. Each entry gets the
    org of the changed object, the actor and request id of the request or task (when it declared
    them with `audit.actors.acting_as`), and the changes with secrets masked."""

    def log_create(self, instance, force_log: bool = False, **kwargs):
        kwargs.setdefault("org_id", instance.org_id)
        if kwargs.get("changes") is not None:
            kwargs["changes"] = secrets_masked(kwargs["changes"])
        actor = current_actor()
        if actor is not None:
            kwargs.setdefault("actor_kind", actor.kind)
            kwargs.setdefault("actor_id", actor.user_id)
            kwargs.setdefault("actor_token_id", actor.token_id)
            kwargs.setdefault("actor_label", actor.label[:254])
            kwargs.setdefault("remote_addr", actor.ip)
        kwargs.setdefault("cid", (actor.request_id if actor else "") or current_request_id())
        return super().log_create(instance, force_log=force_log, **kwargs)


class ChangeLogEntry(OrgOwnedModel, AbstractLogEntry):
    """django-auditlog's field-level change history of tenant models (AUDITLOG_LOGENTRY_MODEL),
    with the org, row-level security and append-only like the audit events. `cid` is the request id,
    which joins an entry to the AuditEvent of the same request."""

    # The user may be deleted later; the entry must not change (and cannot: it is append-only).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True,
        related_name="+",
    )
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, blank=True)
    actor_token_id = models.UUIDField(null=True, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)

    objects = ChangeLogEntryManager()
    dangerously_unscoped = models.Manager()

    class Meta(AbstractLogEntry.Meta):
        indexes = [models.Index(fields=["org", "timestamp"], name="audit_change_time")]
