"""The absolute lifetime of a console session.

The idle timeout needs no code: every request saves the session (SESSION_SAVE_EVERY_REQUEST), which
moves its expiry SESSION_COOKIE_AGE ahead, and an expired session no longer loads. What sliding cannot
express is a bound on the total: a session used every minute would live for ever. So the login time
(`auth_at`) is kept in the session and a session older than GATEHOUSE_SESSION_MAX_AGE_SECONDS ends here.
"""
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout

from accounts.session_store import AUTH_AT_KEY


class SessionLifetimeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            auth_at = request.session.get(AUTH_AT_KEY)
            if auth_at is not None and time.time() - auth_at > settings.GATEHOUSE_SESSION_MAX_AGE_SECONDS:
                logout(request)
                messages.info(request, "Your session reached its maximum age. Log in again.")
        return self.get_response(request)
