"""The session engine (SESSION_ENGINE = "accounts.session_store"): Django's database sessions,
stored in `accounts.UserSession` with the user, the way they logged in and the client, copied
from the session's own data on every save."""
import datetime

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone

# Session keys written at login (accounts.services.login_complete).
AUTH_METHOD_KEY = "auth_method"
AUTH_SSO_ORG_KEY = "auth_sso_org_id"
AUTH_AT_KEY = "auth_at"
CLIENT_IP_KEY = "client_ip"
CLIENT_USER_AGENT_KEY = "client_user_agent"


class SessionStore(DatabaseSessionStore):
    @classmethod
    def get_model_class(cls):
        from accounts.models import UserSession

        return UserSession

    def create_model_instance(self, data):
        session = super().create_model_instance(data)
        user_id = data.get(SESSION_KEY)
        session.user_id = int(user_id) if user_id is not None else None
        session.auth_method = data.get(AUTH_METHOD_KEY, "") if user_id is not None else ""
        auth_at = data.get(AUTH_AT_KEY)
        now = timezone.now()
        session.created_at = datetime.datetime.fromtimestamp(auth_at, tz=datetime.UTC) if auth_at else now
        session.last_seen_at = now
        session.ip = data.get(CLIENT_IP_KEY)
        session.user_agent = data.get(CLIENT_USER_AGENT_KEY, "")[:256]
        return session

    def save(self, must_create=False):
        try:
            super().save(must_create=must_create)
        except UpdateError:
            # The session was ended while this request ran (a role change of its own user, a revocation):
            # it stays ended, and the request still gets its response instead of Django's 400.
            if must_create:
                raise
