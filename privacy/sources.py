"""Subject data sources: every place that holds data about a data subject in an org.

A source answers two questions for a resolved `Subject`, always inside the org's context:
- `describe`: what it holds, as manifest entries (source, table, count, fields) and JSON-able records;
- `erase_batch`: delete or irreversibly pseudonymise at most `limit` rows; returns the rows handled per
  table. A batch commits with the request's progress, and whatever it handled no longer matches the
  subject, so a run that crashed half-way is finished by running it again.

`SUBJECT_DATA_SOURCES` lists them in erasure order: the console account comes last, because the
identifiers of the other sources are fixed before it is pseudonymised.
"""
import dataclasses
import datetime
import decimal
import uuid
from typing import Protocol

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Q
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from guardian.shortcuts import remove_perm

from accounts.models import AdminToken, UserSession
from config.errors import Conflict
from privacy.models import DataSubjectArchive, DataSubjectRequest, RequestKind
from requestlogs.models import RequestLog
from spend.models import SpendEntry
from sso.models import SsoIdentity
from tenants.models import Membership, Org, Role, TeamMembership
from tenants.selectors import TEAM_ADMIN_PERMISSION

User = get_user_model()
ERASED_EMAIL_DOMAIN = "erased.invalid"


@dataclasses.dataclass(frozen=True)
class Subject:
    """Who a request is about, in one org: a console user who is a member of the org (or nobody), and
    the end-user ids of proxied requests that name them. `other_orgs` is whether the console user is a
    member of any other org: then their account itself is not this org's to describe or erase."""

    user_id: int | None
    end_users: tuple[str, ...]
    other_orgs: bool = False
    pseudonym: str = ""

    def end_user_match(self, field: str = "end_user") -> Q:
        """Case-insensitive, since an email address may be sent in any case; nothing when there is no id."""
        match = Q(pk__in=[])
        for end_user in self.end_users:
            match |= Q(**{f"{field}__iexact": end_user})
        return match


@dataclasses.dataclass
class Description:
    manifest: list[dict]
    records: dict[str, list[dict]]


class SubjectDataSource(Protocol):
    name: str

    def describe(self, *, org: Org, subject: Subject) -> Description: ...

    def erase_batch(self, *, org: Org, subject: Subject, limit: int) -> dict[str, int]: ...


def _json_value(value):
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _rows(queryset: models.QuerySet, fields: list[str]) -> list[dict]:
    return [{name: _json_value(value) for name, value in row.items()} for row in queryset.values(*fields)]


def _manifest_entry(source: str, model: type[models.Model], rows: list[dict], fields: list[str], note: str = "") -> dict:
    entry = {"source": source, "table": model._meta.db_table, "count": len(rows), "fields": fields}
    return entry | ({"note": note} if note else {})


def _concrete_fields(model: type[models.Model], *, leave_out: tuple[str, ...] = ()) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields if field.attname not in ("org_id", *leave_out)]


class RequestLogSource:
    """Proxied requests whose `user` was the subject: metadata, prompt and completion text, guardrail
    findings. Erasure pseudonymises (the rows keep their tokens and cost, so usage figures stay right):
    the end-user id becomes the request's pseudonym, text and client address go."""

    name = "request_logs"

    def _matching(self, *, org: Org, subject: Subject) -> models.QuerySet:
        return RequestLog.objects.filter(org=org).filter(subject.end_user_match())

    def describe(self, *, org: Org, subject: Subject) -> Description:
        fields = _concrete_fields(RequestLog)
        rows = _rows(self._matching(org=org, subject=subject).order_by("created_at"), fields)
        findings = [{"request_log_id": row["id"], "guardrail": row["guardrail"]} for row in rows if row.get("guardrail")]
        manifest = [
            _manifest_entry(self.name, RequestLog, rows, fields),
            _manifest_entry("guardrail_findings", RequestLog, findings, ["request_log_id", "guardrail"],
                            note="categories and counts found in these requests; the request-log column `guardrail`"),
        ]
        return Description(manifest=manifest, records={self.name: rows, "guardrail_findings": findings})

    def erase_batch(self, *, org: Org, subject: Subject, limit: int) -> dict[str, int]:
        matching = self._matching(org=org, subject=subject)
        # Ids first: as a subquery with LIMIT, PostgreSQL would run it once per row of the org.
        ids = list(matching.order_by("created_at").values_list("id", flat=True)[:limit])
        # The subject match is repeated on the update, so that a concurrent run cannot count a row twice.
        handled = matching.filter(id__in=ids).update(
            end_user=subject.pseudonym, client_ip=None, request_text=None, response_text=None
        )
        return {RequestLog._meta.db_table: handled}


class SpendSource:
    """The spend ledger (one row per request): amounts stay, the end-user id becomes the pseudonym, so
    totals survive as anonymous aggregates."""

    name = "spend"

    def _matching(self, *, org: Org, subject: Subject) -> models.QuerySet:
        return SpendEntry.objects.filter(org=org).filter(subject.end_user_match())

    def describe(self, *, org: Org, subject: Subject) -> Description:
        fields = _concrete_fields(SpendEntry)
        rows = _rows(self._matching(org=org, subject=subject).order_by("created_at"), fields)
        return Description(manifest=[_manifest_entry(self.name, SpendEntry, rows, fields)], records={self.name: rows})

    def erase_batch(self, *, org: Org, subject: Subject, limit: int) -> dict[str, int]:
        matching = self._matching(org=org, subject=subject)
        ids = list(matching.order_by("created_at").values_list("id", flat=True)[:limit])
        return {SpendEntry._meta.db_table: matching.filter(id__in=ids).update(end_user=subject.pseudonym)}


class AccessArchiveSource:
    """Archives Gatehouse still holds from earlier access requests about the same subject."""

    name = "access_archives"

    def _requests(self, *, org: Org, subject: Subject) -> models.QuerySet:
        match = Q(pk__in=[])
        for end_user in subject.end_users:
            match |= Q(subject_value__iexact=end_user)
        if subject.user_id is not None:
            match |= Q(subject_kind="user", subject_value=str(subject.user_id))
        return DataSubjectRequest.objects.filter(org=org, kind=RequestKind.ACCESS).exclude(subject_value="").filter(match)

    def describe(self, *, org: Org, subject: Subject) -> Description:
        fields = ["request_id", "created_at", "expires_at", "downloads"]
        archives = DataSubjectArchive.objects.filter(org=org, request__in=self._requests(org=org, subject=subject))
        rows = _rows(archives.order_by("created_at"), fields)
        note = "earlier access archives about this subject; their content is what the other sources list"
        manifest = [_manifest_entry(self.name, DataSubjectArchive, rows, fields, note)]
        return Description(manifest=manifest, records={self.name: rows})

    def erase_batch(self, *, org: Org, subject: Subject, limit: int) -> dict[str, int]:
        requests = list(self._requests(org=org, subject=subject).values_list("id", flat=True)[:limit])
        deleted, _ = DataSubjectArchive.objects.filter(org=org, request_id__in=requests).delete()
        # The earlier requests stay (they are the record that access was given), without the identifier.
        blanked = DataSubjectRequest.objects.filter(org=org, id__in=requests).update(subject_value="")
        return {DataSubjectArchive._meta.db_table: deleted, DataSubjectRequest._meta.db_table: blanked}


class ConsoleAccountSource:
    """A console user who is a member of the org: their membership, team memberships and team-admin grants,
    admin tokens and SSO identities in this org. The account itself (email, name, sessions, second
    factors, login attempts) only when the user is a member of no other org: otherwise it is not this
    org's to give out or erase, and only what belongs to this org goes."""

    name = "console_account"
    ACCOUNT_FIELDS = ["id", "email", "name", "is_active", "date_joined", "last_login"]
    MEMBERSHIP_FIELDS = ["id", "role", "created_at"]
    TEAM_FIELDS = ["id", "team__slug", "created_at"]
    TOKEN_FIELDS = ["id", "name", "role", "prefix", "last_four", "created_at", "expires_at", "revoked_at", "last_used_at"]
    SSO_FIELDS = ["id", "subject", "created_at", "last_login_at"]
    SESSION_FIELDS = ["auth_method", "created_at", "last_seen_at", "expire_date", "ip", "user_agent"]

    def _parts(self, *, org: Org, user_id: int, own_account: bool) -> list[tuple[type[models.Model], models.QuerySet, list]]:
        parts = [
            (Membership, Membership.objects.filter(org=org, user_id=user_id), self.MEMBERSHIP_FIELDS),
            (TeamMembership, TeamMembership.objects.filter(org=org, membership__user_id=user_id), self.TEAM_FIELDS),
            (AdminToken, AdminToken.objects.filter(org=org, user_id=user_id), self.TOKEN_FIELDS),
            (SsoIdentity, SsoIdentity.objects.filter(org=org, user_id=user_id), self.SSO_FIELDS),
        ]
        if own_account:
            parts = [(User, User.objects.filter(id=user_id), self.ACCOUNT_FIELDS), *parts,
                     (UserSession, UserSession.objects.filter(user_id=user_id), self.SESSION_FIELDS)]
        return parts

    def describe(self, *, org: Org, subject: Subject) -> Description:
        if subject.user_id is None:
            return Description(manifest=[], records={})
        manifest, records = [], {}
        for model, queryset, fields in self._parts(org=org, user_id=subject.user_id, own_account=not subject.other_orgs):
            rows = _rows(queryset, fields)
            records[model._meta.db_table] = rows
            manifest.append(_manifest_entry(self.name, model, rows, fields))
        return Description(manifest=manifest, records=records)

    def erase_batch(self, *, org: Org, subject: Subject, limit: int) -> dict[str, int]:
        """All in one batch (a person has a handful of these rows), so that the membership and the account
        go together: a resumed run must never find the membership gone but the account still there."""
        user = User.objects.filter(id=subject.user_id).first() if subject.user_id is not None else None
        membership = Membership.objects.filter(org=org, user=user).first() if user is not None else None
        if membership is None and (user is None or subject.other_orgs or user.email.endswith(f"@{ERASED_EMAIL_DOMAIN}")):
            return {}
        counts = {}
        if membership is not None:
            other_owners = Membership.objects.filter(org=org, role=Role.OWNER).exclude(id=membership.id)
            if membership.role == Role.OWNER and not other_owners.exists():
                raise Conflict("The subject is the org's last owner; make another member owner first, then file again.")
            team_memberships = TeamMembership.objects.filter(org=org, membership=membership).select_related("team")
            for team_membership in team_memberships:
                remove_perm(TEAM_ADMIN_PERMISSION, user, team_membership.team)
            counts[TeamMembership._meta.db_table] = team_memberships.delete()[0]
            counts[AdminToken._meta.db_table] = AdminToken.objects.filter(org=org, user=user).delete()[0]
            counts[SsoIdentity._meta.db_table] = SsoIdentity.objects.filter(org=org, user=user).delete()[0]
            counts[Membership._meta.db_table] = Membership.objects.filter(id=membership.id).delete()[0]
        if not subject.other_orgs:
            counts |= self._account_pseudonymise(user=user, subject=subject)
        return counts

    def _account_pseudonymise(self, *, user, subject: Subject) -> dict[str, int]:
        """The row stays (keys, audit events and requests name its id), with nothing left that identifies the person."""
        email = user.email
        counts = {UserSession._meta.db_table: UserSession.objects.filter(user=user).delete()[0]}
        counts["otp_devices"] = sum(model.objects.filter(user=user).delete()[0] for model in (TOTPDevice, StaticDevice))
        counts["axes_login_attempts"] = sum(
            model.objects.filter(username__iexact=email).delete()[0]
            for model in (AccessAttempt, AccessLog, AccessFailureLog)
        )
        user.email = f"{subject.pseudonym.replace(':', '-')}@{ERASED_EMAIL_DOMAIN}"
        user.name = ""
        user.is_active = False
        user.set_unusable_password()
        user.save()
        counts[User._meta.db_table] = 1
        return counts


SUBJECT_DATA_SOURCES: tuple[SubjectDataSource, ...] = (
    RequestLogSource(), SpendSource(), AccessArchiveSource(), ConsoleAccountSource(),
)
