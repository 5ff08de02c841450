import dataclasses
import datetime
import logging
import math
import time

from django.conf import settings
from django.contrib.auth import login, logout
from django.db import transaction
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp import verify_token as otp_verify_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AdminToken, User, UserSession
from accounts.selectors import (
    AUTH_METHOD_PASSWORD,
    backup_codes_remaining,
    mfa_enrolled,
    mfa_requiring_memberships,
    totp_device_get,
    user_session_list,
    user_session_public_id,
)
from accounts.session_store import (
    AUTH_AT_KEY,
    AUTH_METHOD_KEY,
    AUTH_SSO_ORG_KEY,
    CLIENT_IP_KEY,
    CLIENT_USER_AGENT_KEY,
)
from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from keys.secrets import secret_generate, secret_hash
from sso.selectors import sso_connection_get, sso_password_login_refused
from tenants.context import org_context
from tenants.models import ROLE_RANK, Membership, Org, Role
from tenants.selectors import memberships_of_user_dangerously_unscoped

ADMIN_TOKEN_PREFIX = "gha_"


@transaction.atomic
def admin_token_create(
    *, org: Org, user, name: str, role: Role, acting_role: Role, expires_at: datetime.datetime | None, actor: Actor
) -> tuple[AdminToken, str]:
    """Returns the token and its secret; the secret is not stored and cannot be shown again."""
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(acting_role)]:
        raise PermissionDenied("A token cannot carry a role above your own.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("The expiry must be in the future.", field="expires_at")
    secret = secret_generate(ADMIN_TOKEN_PREFIX)
    token = AdminToken.objects.create(
        org=org, user=user, name=name, role=role, secret_hash=secret_hash(secret),
        prefix=secret[: len(ADMIN_TOKEN_PREFIX) + 4], last_four=secret[-4:], expires_at=expires_at,
    )
    audit_event_record(
        org_id=org.id, actor=actor, action="admin_token.create", target=token,
        changes={"name": [None, name], "role": [None, role], "user": [None, user.email]},
    )
    return token, secret


@transaction.atomic
def admin_token_revoke(*, org: Org, token: AdminToken, actor: Actor, reason: str = "revoked") -> AdminToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_event_record(
            org_id=org.id, actor=actor, action="admin_token.revoke", target=token, changes={"reason": [None, reason]}
        )
    return token


@transaction.atomic
def admin_tokens_expire(*, org: Org, actor: Actor) -> int:
    """Marks tokens past their expiry as revoked, so lists and audits show why they stopped working."""
    expired = AdminToken.objects.filter(org=org, revoked_at__isnull=True, expires_at__lte=timezone.now())
    count = 0
    for token in expired.select_for_update():
        admin_token_revoke(org=org, token=token, actor=actor, reason="expired")
        count += 1
    return count


def admin_token_effective_role(*, token: AdminToken, membership_role: Role) -> Role:
    """A token never grants more than its owner has now, even if the owner was demoted since."""
    return min(Role(token.role), Role(membership_role), key=lambda role: ROLE_RANK[role])


# Security events -----------------------------------------------------------------------------

security_log = logging.getLogger("gatehouse.security")


class MfaThrottled(DomainError):
    """Too many wrong codes for a device: django-otp makes the next attempt wait."""

    status_code = 429
    code = "mfa_throttled"


def request_actor(*, request, user=None, label: str = "") -> Actor:
    """The actor of a request made before (or while) logging in, when `request.user` is not the person yet."""
    ip = request.META.get("REMOTE_ADDR")
    user_agent = request.META.get("HTTP_USER_AGENT", "")[:256]
    if user is not None:
        return Actor(kind="user", user_id=user.pk, label=user.email, ip=ip, user_agent=user_agent)
    return Actor(kind="system", label=label or "anonymous login attempt", ip=ip, user_agent=user_agent)


def user_security_event_record(*, user, action: str, actor: Actor, changes: dict | None = None) -> int:
    """A security event of a person (login, logout, failed login, lockout, MFA). An audit event belongs
    to an org, so it is recorded in every org the person is a member of; returns how many."""
    with transaction.atomic():
        memberships = memberships_of_user_dangerously_unscoped(user=user)
        for membership in memberships:
            with org_context(membership.org_id):
                audit_event_record(org_id=membership.org_id, actor=actor, action=action, target=user, changes=changes)
    if not memberships:
        security_log.info("%s user=%s ip=%s changes=%s", action, user.email, actor.ip, changes or {})
    return len(memberships)


# Logging in ----------------------------------------------------------------------------------

PENDING_LOGIN_KEY = "login_pending"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@dataclasses.dataclass(frozen=True)
class PendingLogin:
    """A person who passed the first factor (password or IdP) and still owes the second."""

    user: User
    method: str
    sso_org_id: str | None


def _orgs_where_password_refused(*, user) -> tuple[list[Membership], list[Org]]:
    with transaction.atomic():
        memberships = memberships_of_user_dangerously_unscoped(user=user)
        refused = []
        for membership in memberships:
            with org_context(membership.org_id):
                if sso_password_login_refused(org=membership.org, user=user):
                    refused.append(membership.org)
    return memberships, refused


def password_login_check(*, request, user) -> None:
    """After a correct password: refuse a person all of whose orgs sign in only through SSO."""
    memberships, refused = _orgs_where_password_refused(user=user)
    if memberships and len(refused) == len(memberships):
        user_security_event_record(
            user=user, action="auth.login_refused", actor=request_actor(request=request, user=user),
            changes={"reason": [None, "sso_required"]},
        )
        raise PermissionDenied(
            "Your org signs in through single sign-on: enter your work email under “Single sign-on”."
        )


def login_begin(*, request, user, method: str, sso_org_id=None) -> bool:
    """After the first factor. True when the person is logged in; False when a second factor is due
    first (the session then holds only a short-lived pending login, and no authenticated user)."""
    if mfa_enrolled(user=user):
        request.session[PENDING_LOGIN_KEY] = {
            "user_id": user.pk, "method": method, "sso_org_id": str(sso_org_id) if sso_org_id else None,
            "started_at": time.time(),
        }
        return False
    login_complete(request=request, user=user, method=method, sso_org_id=sso_org_id)
    return True


def login_pending_get(*, request) -> PendingLogin | None:
    pending = request.session.get(PENDING_LOGIN_KEY)
    if not pending:
        return None
    if time.time() - pending["started_at"] > settings.GATEHOUSE_LOGIN_PENDING_SECONDS:
        del request.session[PENDING_LOGIN_KEY]
        return None
    user = User.objects.filter(pk=pending["user_id"], is_active=True).first()
    if user is None:
        return None
    return PendingLogin(user=user, method=pending["method"], sso_org_id=pending["sso_org_id"])


def login_complete(*, request, user, method: str, sso_org_id=None, device=None) -> None:
    request.session.pop(PENDING_LOGIN_KEY, None)
    login(request, user, backend=MODEL_BACKEND)  # a new session key: no fixation
    if device is not None:
        otp_login(request, device)
    request.session[AUTH_METHOD_KEY] = method
    request.session[AUTH_SSO_ORG_KEY] = str(sso_org_id) if sso_org_id else None
    request.session[AUTH_AT_KEY] = time.time()
    request.session[CLIENT_IP_KEY] = request.META.get("REMOTE_ADDR")
    request.session[CLIENT_USER_AGENT_KEY] = request.META.get("HTTP_USER_AGENT", "")[:256]
    actor = request_actor(request=request, user=user)
    user_security_event_record(
        user=user, action="auth.login", actor=actor,
        changes={"method": [None, method], "second_factor": [None, device is not None]},
    )
    if method == AUTH_METHOD_PASSWORD:
        _break_glass_logins_record(user=user, actor=actor)


def _break_glass_logins_record(*, user, actor: Actor) -> None:
    """A password login that opens an SSO-only org is its break-glass owner's: worth its own event."""
    with transaction.atomic():
        for membership in memberships_of_user_dangerously_unscoped(user=user):
            with org_context(membership.org_id):
                connection = sso_connection_get(org=membership.org)
                if connection is not None and connection.sso_only and connection.break_glass_user_id == user.pk:
                    audit_event_record(org_id=membership.org_id, actor=actor, action="auth.break_glass_login", target=user)


def logout_complete(*, request) -> None:
    if request.user.is_authenticated:
        user_security_event_record(
            user=request.user, action="auth.logout", actor=request_actor(request=request, user=request.user)
        )
    logout(request)


# Second factor -------------------------------------------------------------------------------

TOTP_CODE_LENGTH = 6
TOTP_REJECTED = (
    "That code is not valid: it is wrong, expired or was already used. "
    "Enter the current code from your authenticator app."
)
BACKUP_CODE_REJECTED = "That backup code is wrong or has already been used. Each backup code works once."


def _throttle_message(info: dict | None) -> str:
    locked_until = (info or {}).get("locked_until")
    seconds = max(1, math.ceil((locked_until - timezone.now()).total_seconds())) if locked_until else 1
    return f"Too many wrong codes. Wait {seconds} seconds, then try again."


def mfa_code_verify(*, user, code: str, actor: Actor):
    """Checks a TOTP code (6 digits) or a backup code with django-otp (throttled, each code once).
    Returns the device; a failure is audited and raises with a message the person can act on."""
    code = "".join(str(code).split()).lower()
    if code.isdigit() and len(code) == TOTP_CODE_LENGTH:
        factor, device, rejected = "totp", totp_device_get(user=user), TOTP_REJECTED
    else:
        factor, rejected = "backup_code", BACKUP_CODE_REJECTED
        device = StaticDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        user_security_event_record(user=user, action="auth.mfa_failed", actor=actor,
                                   changes={"factor": [None, factor], "reason": [None, "no_device"]})
        raise ValidationFailed(rejected, field="code")
    allowed, info = device.verify_is_allowed()
    if not allowed:
        user_security_event_record(user=user, action="auth.mfa_failed", actor=actor,
                                   changes={"factor": [None, factor], "reason": [None, "throttled"]})
        raise MfaThrottled(_throttle_message(info), field="code")
    verified = otp_verify_token(user, device.persistent_id, code)  # locks the device row while it checks
    if verified is None:
        user_security_event_record(user=user, action="auth.mfa_failed", actor=actor,
                                   changes={"factor": [None, factor], "reason": [None, "wrong_or_reused"]})
        raise ValidationFailed(rejected, field="code")
    if factor == "backup_code":
        user_security_event_record(user=user, action="auth.backup_code_use", actor=actor,
                                   changes={"remaining": [None, backup_codes_remaining(user=user)]})
    return verified


def mfa_challenge_verify(*, request, code: str):
    """The second step of a login, or the verification of a logged-in session that is not verified yet."""
    pending = login_pending_get(request=request)
    user = pending.user if pending else (request.user if request.user.is_authenticated else None)
    if user is None:
        raise PermissionDenied("Your login has expired. Log in again.")
    device = mfa_code_verify(user=user, code=code, actor=request_actor(request=request, user=user))
    if pending is not None:
        login_complete(request=request, user=user, method=pending.method, sso_org_id=pending.sso_org_id, device=device)
    else:
        otp_login(request, device)
        user_security_event_record(user=user, action="auth.mfa_verify", actor=request_actor(request=request, user=user))
    return user


def totp_enrolment_begin(*, user) -> TOTPDevice:
    """An unconfirmed authenticator app for the person to scan; it counts only once a code confirms it."""
    return totp_device_get(user=user, confirmed=False) or TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=False
    )


def totp_enrolment_confirm(*, request, code: str) -> list[str]:
    """Confirms the new authenticator app with a code from it, replaces any earlier one, verifies this
    session and returns fresh backup codes (shown once)."""
    user = request.user
    actor = request_actor(request=request, user=user)
    device = totp_device_get(user=user, confirmed=False)
    if device is None:
        raise ValidationFailed("Start the set-up again: scan the new QR code first.", field="code")
    allowed, info = device.verify_is_allowed()
    if not allowed:
        raise MfaThrottled(_throttle_message(info), field="code")
    code = "".join(str(code).split())
    if not device.verify_token(code):
        user_security_event_record(user=user, action="auth.mfa_failed", actor=actor,
                                   changes={"factor": [None, "totp_enrolment"], "reason": [None, "wrong_code"]})
        raise ValidationFailed(
            "That code does not match the QR code. Check the time on your phone and enter the current code.",
            field="code",
        )
    with transaction.atomic():
        replaced = TOTPDevice.objects.filter(user=user, confirmed=True).delete()[0]
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        codes = _backup_codes_replace(user=user)
        user_security_event_record(user=user, action="auth.mfa_enrol", actor=actor,
                                   changes={"factor": [None, "totp"], "replaced": [None, bool(replaced)]})
    otp_login(request, device)
    return codes


def _backup_codes_replace(*, user) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.GATEHOUSE_MFA_BACKUP_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


@transaction.atomic
def backup_codes_regenerate(*, request) -> list[str]:
    """New backup codes (the old ones stop working); shown once. Needs a verified session."""
    user = request.user
    if not user.is_verified() or not mfa_enrolled(user=user):
        raise PermissionDenied("Verify with your authenticator app first.")
    codes = _backup_codes_replace(user=user)
    user_security_event_record(user=user, action="auth.backup_codes_regenerate",
                               actor=request_actor(request=request, user=user))
    return codes


def mfa_remove(*, request) -> None:
    """Removes the person's own second factor (app and backup codes): never while a role or org requires one."""
    user = request.user
    if not user.is_verified():
        raise PermissionDenied("Verify with your authenticator app first.")
    requiring = mfa_requiring_memberships(user=user)
    if requiring:
        orgs = ", ".join(sorted(membership.org.name for membership in requiring))
        raise Conflict(
            f"Your role in {orgs} requires two-factor authentication, so you cannot remove your last factor. "
            "To move to a new phone, set up a new authenticator app: it replaces the current one."
        )
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        user_security_event_record(user=user, action="auth.mfa_remove", actor=request_actor(request=request, user=user))
    request.session.pop(DEVICE_ID_SESSION_KEY, None)


@transaction.atomic
def member_mfa_reset(*, org: Org, membership: Membership, actor: Actor, acting_role: Role) -> int:
    """An org admin removes a member's second factor (a lost phone); the member enrols again at their
    next login and every session of theirs ends. Returns how many factors were removed."""
    if membership.user_id == actor.user_id:
        raise PermissionDenied("Manage your own two-factor authentication on your account's security page.")
    if Role(membership.role) == Role.OWNER and Role(acting_role) != Role.OWNER:
        raise PermissionDenied("Only an owner can reset an owner's two-factor authentication.")
    if ROLE_RANK[Role(membership.role)] > ROLE_RANK[Role(acting_role)]:
        raise PermissionDenied("You cannot reset the two-factor authentication of a role above your own.")
    user = membership.user
    # A person's factors guard every org they belong to: one org's admins may not weaken the others'.
    if any(other.org_id != org.id for other in memberships_of_user_dangerously_unscoped(user=user)):
        raise Conflict(
            "This person also belongs to other orgs, so their two-factor authentication cannot be reset from "
            "one org. They can log in with a backup code and set up a new authenticator app."
        )
    removed = TOTPDevice.objects.filter(user=user).delete()[0] + StaticDevice.objects.filter(user=user).delete()[0]
    ended = user_sessions_end(user=user)
    audit_event_record(
        org_id=org.id, actor=actor, action="member.mfa_reset", target=membership,
        changes={"email": [user.email, user.email], "factors_removed": [removed, 0], "sessions_ended": [ended, 0]},
    )
    return removed


# Sessions ------------------------------------------------------------------------------------

def user_sessions_end(*, user, keep_session_key: str | None = None) -> int:
    """Logs the person out everywhere (but `keep_session_key`): on a password or role change, an MFA reset."""
    sessions = UserSession.objects.filter(user=user)
    if keep_session_key:
        sessions = sessions.exclude(session_key=keep_session_key)
    return sessions.delete()[0]


@transaction.atomic
def user_session_revoke(*, request, public_id: str) -> None:
    """Ends one of the person's own sessions, named by its public id (see `user_session_public_id`)."""
    if public_id == user_session_public_id(request.session.session_key or ""):
        raise ValidationFailed("This is the session you are using; log out instead.")
    keys = [session.session_key for session in user_session_list(user=request.user) if session.public_id == public_id]
    if not keys or not UserSession.objects.filter(user=request.user, session_key__in=keys).delete()[0]:
        raise NotFound("Session not found; it may have ended already.")
    user_security_event_record(user=request.user, action="auth.session_revoke",
                               actor=request_actor(request=request, user=request.user))


@transaction.atomic
def user_sessions_revoke_others(*, request) -> int:
    ended = user_sessions_end(user=request.user, keep_session_key=request.session.session_key)
    if ended:
        user_security_event_record(user=request.user, action="auth.session_revoke", actor=request_actor(
            request=request, user=request.user), changes={"sessions": [ended, 0]})
    return ended
