from django.db.models import QuerySet

from sso.models import SsoConnection, SsoDomain, SsoIdentity
from tenants.context import sso_domain_context
from tenants.models import Org


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].strip().lower().rstrip(".")


def sso_connection_get(*, org: Org) -> SsoConnection | None:
    return SsoConnection.objects.filter(org=org).select_related("break_glass_user").first()


def sso_domain_list(*, org: Org) -> QuerySet[SsoDomain]:
    return SsoDomain.objects.filter(org=org).order_by("domain")


def sso_domain_get_dangerously_unscoped(*, domain: str) -> SsoDomain | None:
    """The org whose IdP serves an email domain, looked up before any org is known (the login page).
    Needs an enclosing transaction; PostgreSQL shows only the row of this domain (policy `org_lookup`)."""
    with sso_domain_context(domain):
        return SsoDomain.dangerously_unscoped.select_related("org").filter(domain=domain).first()


def sso_password_login_refused(*, org: Org, user) -> bool:
    """An SSO-only org takes no password logins, except from its break-glass owner. Inside the org's context."""
    connection = sso_connection_get(org=org)
    return connection is not None and connection.sso_only and connection.break_glass_user_id != user.pk


def sso_identity_get(*, org: Org, subject: str) -> SsoIdentity | None:
    return SsoIdentity.objects.filter(org=org, subject=subject).select_related("user").first()
