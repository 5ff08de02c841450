import hmac

from django.conf import settings
from rest_framework import authentication, exceptions

from accounts.selectors import admin_token_get_by_secret_dangerously_unscoped
from accounts.services import ADMIN_TOKEN_PREFIX


def _bearer(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class AdminTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer gha_...`; the request then acts as the token's user, bounded by the token's role."""

    def authenticate(self, request):
        secret = _bearer(request)
        if secret is None or not secret.startswith(ADMIN_TOKEN_PREFIX):
            return None
        token = admin_token_get_by_secret_dangerously_unscoped(secret=secret)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked admin token.")
        return token.user, token

    def authenticate_header(self, request):
        return "Bearer"


class MasterKeyPrincipal:
    """The platform master key: may create orgs and their first owner, nothing else."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_superuser = False
    pk = None
    email = "master-key"


class MasterKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        secret = _bearer(request)
        master_key = settings.GATEHOUSE_MASTER_KEY
        if secret is None or secret.startswith(ADMIN_TOKEN_PREFIX):
            return None
        if not master_key or not hmac.compare_digest(secret.encode(), master_key.encode()):
            raise exceptions.AuthenticationFailed("Invalid bearer credential.")
        principal = MasterKeyPrincipal()
        return principal, principal

    def authenticate_header(self, request):
        return "Bearer"


class SessionNotVerified(exceptions.PermissionDenied):
    default_detail = (
        "This console session has not been verified with a second factor. Set up or enter your "
        "two-factor code in the console (/account/mfa/), or use an admin token."
    )
    default_code = "mfa_required"


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """A console session (with CSRF), accepted by the management API only once it is verified with a
    second factor (django-otp's `is_verified`, set by OTPMiddleware)."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not getattr(user, "is_verified", lambda: False)():
            raise SessionNotVerified()
        return result
