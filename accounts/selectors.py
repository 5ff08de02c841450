import enum

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AdminToken, UserSession
from accounts.session_store import AUTH_METHOD_KEY, AUTH_SSO_ORG_KEY
from keys.secrets import secret_hash, secret_matches
from sso.selectors import sso_password_login_refused
from tenants.context import secret_hash_context
from tenants.models import Membership, Role
from tenants.selectors import memberships_of_user_dangerously_unscoped, object_by_id_or_not_found

AUTH_METHOD_PASSWORD = "password"
AUTH_METHOD_SSO = "sso"


def admin_token_get_by_secret_dangerously_unscoped(*, secret: str) -> AdminToken | None:
    """The token behind a presented secret, if it is live. Runs before any org is known:
    PostgreSQL only shows the row whose hash matches (policy `org_lookup`)."""
    hashed = secret_hash(secret)
    with secret_hash_context(hashed):
        token = AdminToken.dangerously_unscoped.select_related("user", "org").filter(secret_hash=hashed).first()
    if token is None or not secret_matches(secret, token.secret_hash):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= timezone.now()):
        return None
    return token


def admin_token_list(*, org, user=None):
    """All of the org's tokens, or only `user`'s."""
    tokens = AdminToken.objects.filter(org=org).select_related("user").order_by("-created_at")
    return tokens.filter(user=user) if user is not None else tokens


def admin_token_get(*, org, token_id, user=None) -> AdminToken:
    return object_by_id_or_not_found(admin_token_list(org=org, user=user), token_id, "Token")


def invite_path_for(user) -> str | None:
    """Where a person who has no password yet sets one (valid for PASSWORD_RESET_TIMEOUT); None once they have one."""
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    if user.has_usable_password():
        return None
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("console:invite-accept", kwargs={"uidb64": uidb64, "token": default_token_generator.make_token(user)})


# MFA ---------------------------------------------------------------------------------------

ROLES_REQUIRING_MFA = (Role.OWNER, Role.ADMIN)


def totp_device_get(*, user, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("-id").first()


def backup_codes_remaining(*, user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def mfa_enrolled(*, user) -> bool:
    """A confirmed authenticator app; backup codes only stand in for it."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def mfa_enrolled_user_ids(*, user_ids: list[int]) -> set[int]:
    return set(TOTPDevice.objects.filter(user_id__in=user_ids, confirmed=True).values_list("user_id", flat=True))


def mfa_required_for_membership(*, membership: Membership) -> bool:
    return Role(membership.role) in ROLES_REQUIRING_MFA or membership.org.mfa_required


def mfa_requiring_memberships(*, user) -> list[Membership]:
    """The user's memberships whose role or org requires a second factor."""
    with transaction.atomic():
        memberships = memberships_of_user_dangerously_unscoped(user=user)
    return [membership for membership in memberships if mfa_required_for_membership(membership=membership)]


# Sessions ----------------------------------------------------------------------------------

def user_session_public_id(session_key: str) -> str:
    """What a page shows for a session instead of its key (the key is the credential itself)."""
    return salted_hmac("accounts.user_session_public_id", session_key).hexdigest()[:32]


def user_session_list(*, user) -> list[UserSession]:
    sessions = list(UserSession.objects.filter(user=user, expire_date__gt=timezone.now()).order_by("-last_seen_at"))
    for session in sessions:
        session.public_id = user_session_public_id(session.session_key)
    return sessions


class OrgAccessProblem(enum.Enum):
    """Why a console session may not act in an org yet; each maps to a page that resolves it."""

    SSO_REQUIRED = "This org signs in through single sign-on. Log in with your work email under Single sign-on."
    SSO_SESSION_OF_ANOTHER_ORG = (
        "You signed in through another org's single sign-on. Log in again to open this org."
    )
    MFA_ENROLMENT_REQUIRED = "Your role in this org requires two-factor authentication. Set it up to continue."
    MFA_VERIFICATION_REQUIRED = "Enter a code from your authenticator app to continue."


def session_org_access_problem(*, session, user, membership: Membership) -> OrgAccessProblem | None:
    """Whether this session may act in the membership's org. Call it inside the org's context.

    A session is bound to how it was opened: an SSO login opens only its own org (another org's
    IdP cannot vouch for this one), and a password login does not open an SSO-only org unless the
    user is its break-glass owner. Then the second factor, when the role or the org requires one.
    """
    method = session.get(AUTH_METHOD_KEY, AUTH_METHOD_PASSWORD)
    if method == AUTH_METHOD_SSO:
        if session.get(AUTH_SSO_ORG_KEY) != str(membership.org_id):
            return OrgAccessProblem.SSO_SESSION_OF_ANOTHER_ORG
    elif sso_password_login_refused(org=membership.org, user=user):
        return OrgAccessProblem.SSO_REQUIRED
    if mfa_required_for_membership(membership=membership) and not user.is_verified():
        if mfa_enrolled(user=user):
            return OrgAccessProblem.MFA_VERIFICATION_REQUIRED
        return OrgAccessProblem.MFA_ENROLMENT_REQUIRED
    return None
