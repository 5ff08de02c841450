"""Single sign-on: an org's OpenID Connect connection, and logging in through it.

A login starts on the login page with an email: its domain names the org, whose IdP gets an
authorization request (code flow, PKCE S256, a fresh `state` and `nonce` kept in this browser's
session). The IdP sends the browser back to /sso/<org>/callback/; the state is taken out of the
session (so it works once), the code is exchanged, the ID token validated (sso.oidc), the person
found or provisioned just in time, and the session opened for that org only (see
accounts.selectors.session_org_access_problem). Every refusal is audited in the org and ends
without a session.
"""
import re
import secrets
import time
import uuid

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.selectors import AUTH_METHOD_SSO
from accounts.services import login_begin, request_actor, security_log, user_security_event_record
from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import Conflict, DomainError, ValidationFailed
from keys.crypto import current_key_id, secret_decrypt, secret_encrypt
from sso import oidc
from sso.models import SsoConnection, SsoDomain, SsoIdentity
from sso.selectors import email_domain, sso_connection_get, sso_domain_get_dangerously_unscoped, sso_domain_list, sso_identity_get
from tenants.context import org_context
from tenants.models import ROLE_RANK, Membership, Org, Role
from tenants.services import member_invite, member_role_change

SSO_FLOWS_KEY = "sso_flows"
SSO_FLOW_SECONDS = 600
SSO_FLOWS_KEPT = 5  # logins started in other tabs stay valid, a few at most
ROLES_FROM_IDP = (Role.ADMIN, Role.MEMBER, Role.VIEWER)  # owners are made in Gatehouse, never by an IdP
DOMAIN_PATTERN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
CLIENT_SECRET_MAX_LENGTH = 4096
MAX_DOMAINS = 50


class SsoLoginFailed(DomainError):
    status_code = 400
    code = "sso_failed"


class _SsoRefusal(Exception):
    """A refusal found while provisioning; recorded by the caller outside the rolled-back transaction."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


# Configuration ---------------------------------------------------------------------------------

def _associated_data(connection: SsoConnection) -> bytes:
    return f"sso:{connection.org_id}:{connection.id}".encode()


def sso_client_secret(connection: SsoConnection) -> str:
    """The plaintext client secret, for the code exchange. Raises keys.crypto.DecryptionFailed."""
    return secret_decrypt(
        connection.client_secret_ciphertext, key_id=connection.encryption_key_id,
        associated_data=_associated_data(connection),
    )


def sso_redirect_uri(*, request, org: Org) -> str:
    """Where the IdP sends the browser back; register it with the IdP."""
    return request.build_absolute_uri(reverse("console:sso-callback", kwargs={"org_slug": org.slug}))


def _domains_validate(domains: list[str]) -> list[str]:
    cleaned = sorted({domain.strip().lower().rstrip(".") for domain in domains})
    if not cleaned:
        raise ValidationFailed("Name at least one email domain whose people sign in here.", field="domains")
    if len(cleaned) > MAX_DOMAINS:
        raise ValidationFailed(f"At most {MAX_DOMAINS} domains.", field="domains")
    for domain in cleaned:
        if not DOMAIN_PATTERN.match(domain):
            raise ValidationFailed(f"{domain!r} is not a domain name.", field="domains")
    return cleaned


def _group_roles_validate(group_roles: dict) -> dict:
    for group, role in group_roles.items():
        if not isinstance(group, str) or not group.strip() or role not in ROLES_FROM_IDP:
            raise ValidationFailed(
                "Map each IdP group to admin, member or viewer (owners are managed in Gatehouse).", field="group_roles"
            )
    return dict(group_roles)


def _break_glass_owner(*, org: Org, email: str | None) -> User | None:
    if not email:
        return None
    membership = Membership.objects.filter(org=org, user__email=email.strip().lower(), role=Role.OWNER).first()
    if membership is None:
        raise ValidationFailed("The break-glass account must be an owner of this org.", field="break_glass_email")
    return membership.user


@transaction.atomic
def sso_connection_save(
    *, org: Org, actor: Actor, issuer: str, client_id: str, domains: list[str], client_secret: str | None = None,
    default_role: str = Role.MEMBER, groups_claim: str = "groups", group_roles: dict | None = None,
    sso_only: bool = False, break_glass_email: str | None = None, scopes: str = oidc.DEFAULT_SCOPES,
) -> SsoConnection:
    """Creates or replaces the org's OIDC connection and its email domains."""
    issuer = oidc.issuer_validate(issuer)
    if not client_id.strip() or len(client_id) > 255:
        raise ValidationFailed("Use the client id the identity provider issued.", field="client_id")
    if default_role not in ROLES_FROM_IDP:
        raise ValidationFailed("New members get admin, member or viewer.", field="default_role")
    domains = _domains_validate(domains)
    scopes = " ".join(dict.fromkeys(scopes.split()))
    if "openid" not in scopes.split() or len(scopes) > 500:
        raise ValidationFailed("The scopes must include openid (and email, for the person's address).", field="scopes")
    group_roles = _group_roles_validate(group_roles or {})
    break_glass_user = _break_glass_owner(org=org, email=break_glass_email)
    if sso_only and break_glass_user is None:
        raise ValidationFailed(
            "An SSO-only org needs a break-glass owner, so that an outage of the identity provider cannot lock "
            "everyone out.", field="break_glass_email",
        )
    connection = sso_connection_get(org=org)
    created = connection is None
    if created:
        if not client_secret:
            raise ValidationFailed("The client secret is required.", field="client_secret")
        connection = SsoConnection(id=uuid.uuid4(), org=org)  # the id is part of the secret's associated data
    before = {} if created else _audit_view(connection, sorted(sso_domain_list(org=org).values_list("domain", flat=True)))
    connection.issuer, connection.client_id = issuer, client_id.strip()
    connection.default_role, connection.groups_claim = default_role, groups_claim.strip()
    connection.scopes = scopes
    connection.group_roles, connection.sso_only, connection.break_glass_user = group_roles, sso_only, break_glass_user
    connection.updated_at = timezone.now()
    secret_replaced = bool(client_secret)
    if client_secret:
        if len(client_secret) > CLIENT_SECRET_MAX_LENGTH:
            raise ValidationFailed("The client secret is too long.", field="client_secret")
        connection.encryption_key_id, connection.client_secret_ciphertext = secret_encrypt(
            client_secret, associated_data=_associated_data(connection)
        )
    connection.save(force_insert=created)
    SsoDomain.objects.filter(org=org).exclude(domain__in=domains).delete()
    existing = set(sso_domain_list(org=org).values_list("domain", flat=True))
    for domain in domains:
        if domain in existing:
            continue
        try:
            with transaction.atomic():
                SsoDomain.objects.create(org=org, domain=domain)
        except IntegrityError:
            raise Conflict(f"The domain {domain} already signs in through another org.", field="domains") from None
    after = _audit_view(connection, domains)
    changes = {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}
    if secret_replaced:
        changes["client_secret"] = "replaced"
    if changes:
        audit_event_record(
            org_id=org.id, actor=actor, action="sso.create" if created else "sso.update", target=connection,
            changes=changes,
        )
    return connection


def _audit_view(connection: SsoConnection, domains: list[str]) -> dict:
    return {
        "issuer": connection.issuer, "client_id": connection.client_id, "scopes": connection.scopes,
        "domains": list(domains),
        "default_role": connection.default_role, "groups_claim": connection.groups_claim,
        "group_roles": connection.group_roles, "sso_only": connection.sso_only,
        "break_glass": connection.break_glass_user.email if connection.break_glass_user else None,
    }


@transaction.atomic
def sso_connection_delete(*, org: Org, actor: Actor) -> None:
    connection = sso_connection_get(org=org)
    if connection is None:
        return
    audit_event_record(org_id=org.id, actor=actor, action="sso.delete", target=connection,
                       changes={"issuer": [connection.issuer, None]})
    SsoDomain.objects.filter(org=org).delete()
    connection.delete()


# Logging in ------------------------------------------------------------------------------------

def sso_login_begin(*, request, email: str) -> str:
    """The IdP's authorization URL for the org that owns the email's domain."""
    email = email.strip().lower()
    domain = email_domain(email)
    with transaction.atomic():
        sso_domain = sso_domain_get_dangerously_unscoped(domain=domain)
    if sso_domain is None:
        user = User.objects.filter(email=email).first()
        changes = {"reason": [None, "unknown_domain"], "domain": [None, domain]}
        if user is not None:
            user_security_event_record(user=user, action="auth.sso_failed", actor=request_actor(request=request, user=user),
                                       changes=changes)
        else:
            security_log.info("auth.sso_failed reason=unknown_domain domain=%s ip=%s", domain, request.META.get("REMOTE_ADDR"))
        raise SsoLoginFailed(
            f"No single sign-on is set up for {domain}. Log in with your password, or ask your org's admin."
        )
    return sso_login_begin_for_org(request=request, org=sso_domain.org, login_hint=email)


def sso_login_begin_for_org(*, request, org: Org, login_hint: str = "") -> str:
    with org_context(org.id):
        connection = sso_connection_get(org=org)
    if connection is None:
        raise SsoLoginFailed("This org has no single sign-on.")
    try:
        metadata = oidc.provider_metadata_get(issuer=connection.issuer)
    except oidc.OidcError as exc:
        _failure_record(request=request, org=org, reason=exc.reason)
        raise SsoLoginFailed(exc.message) from None
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    code_verifier, code_challenge = oidc.pkce_pair()
    redirect_uri = sso_redirect_uri(request=request, org=org)
    now = time.time()
    flows = {
        key: flow for key, flow in request.session.get(SSO_FLOWS_KEY, {}).items()
        if now - flow["started_at"] < SSO_FLOW_SECONDS
    }
    kept = sorted(flows.items(), key=lambda item: item[1]["started_at"])[-(SSO_FLOWS_KEPT - 1):]
    request.session[SSO_FLOWS_KEY] = {
        **dict(kept),
        state: {"org_id": str(org.id), "nonce": nonce, "code_verifier": code_verifier, "redirect_uri": redirect_uri,
                "started_at": now},
    }
    return oidc.authorization_url_build(
        metadata=metadata, client_id=connection.client_id, redirect_uri=redirect_uri, state=state, nonce=nonce,
        code_challenge=code_challenge, scopes=connection.scopes, login_hint=login_hint,
    )


def _failure_record(*, request, org: Org, reason: str, email: str = "") -> None:
    actor = request_actor(request=request, label=f"single sign-on {email}".strip())
    changes = {"reason": [None, reason]}
    if email:
        changes["email"] = [None, email]
    with org_context(org.id):
        audit_event_record(org_id=org.id, actor=actor, action="auth.sso_failed", changes=changes)


def sso_login_finish(*, request, org_slug: str, params) -> tuple[User, Org, bool]:
    """Handles the IdP's redirect back. Returns (user, org, logged in); False means the person's
    second factor is still due. Raises SsoLoginFailed, audited, and then no session exists."""
    org = Org.objects.filter(slug=org_slug).first()
    if org is None:
        raise SsoLoginFailed("This sign-in link names no org.")
    state = params.get("state", "")
    flows = request.session.get(SSO_FLOWS_KEY, {})
    flow = flows.pop(state, None) if state else None
    request.session[SSO_FLOWS_KEY] = flows  # a state works once, whatever happens next

    def fail(reason: str, message: str, email: str = ""):
        _failure_record(request=request, org=org, reason=reason, email=email)
        raise SsoLoginFailed(message)

    if flow is None or flow["org_id"] != str(org.id):
        fail("state_unknown", "This sign-in response does not belong to a sign-in started in this browser, or it "
                              "was used already. Start again from the login page.")
    if time.time() - flow["started_at"] > SSO_FLOW_SECONDS:
        fail("state_expired", "The sign-in took too long. Start again from the login page.")
    if params.get("error"):
        fail("provider_error", f"The identity provider did not sign you in ({params.get('error')[:100]}).")
    with org_context(org.id):
        connection = sso_connection_get(org=org)
    if connection is None:
        fail("not_configured", "This org has no single sign-on any more.")
    if params.get("iss") and params["iss"] != connection.issuer:
        fail("wrong_issuer", "The sign-in response comes from another identity provider.")
    if not params.get("code"):
        fail("no_code", "The identity provider sent no authorization code.")
    try:
        metadata = oidc.provider_metadata_get(issuer=connection.issuer)
        tokens = oidc.code_exchange(
            metadata=metadata, client_id=connection.client_id, client_secret=sso_client_secret(connection),
            code=params["code"], redirect_uri=flow["redirect_uri"], code_verifier=flow["code_verifier"],
        )
        claims = oidc.id_token_validate(
            id_token=tokens["id_token"], metadata=metadata, issuer=connection.issuer, client_id=connection.client_id,
            nonce=flow["nonce"],
        )
    except oidc.OidcError as exc:
        fail(exc.reason, exc.message)
    email = str(claims.get("email", "")).strip().lower()
    try:
        user = _member_provision(request=request, org=org, connection=connection, claims=claims, email=email)
    except _SsoRefusal as refusal:
        fail(refusal.reason, refusal.message, email=email)
    return user, org, login_begin(request=request, user=user, method=AUTH_METHOD_SSO, sso_org_id=org.id)


def role_from_groups(*, connection: SsoConnection, claims: dict) -> Role | None:
    """The highest role the IdP's groups claim maps to, if a mapping is configured and matches."""
    if not connection.group_roles or not connection.groups_claim:
        return None
    groups = claims.get(connection.groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    roles = [Role(connection.group_roles[group]) for group in groups if isinstance(group, str) and group in connection.group_roles]
    return max(roles, key=lambda role: ROLE_RANK[role]) if roles else None


@transaction.atomic
def _member_provision(*, request, org: Org, connection: SsoConnection, claims: dict, email: str) -> User:
    """The person behind the ID token: found by subject, else by email; a newcomer becomes a member
    just in time with the default (or group-mapped) role. Raises _SsoRefusal."""
    if not email:
        raise _SsoRefusal("no_email", "The identity provider sent no email address; it must release the email scope.")
    if claims.get("email_verified") is False:
        raise _SsoRefusal("email_unverified", "The identity provider has not verified this email address.")
    actor = Actor(kind="system", label=f"single sign-on ({connection.issuer})"[:254],
                  ip=request.META.get("REMOTE_ADDR"), user_agent=request.META.get("HTTP_USER_AGENT", "")[:256])
    with org_context(org.id):
        if email_domain(email) not in set(sso_domain_list(org=org).values_list("domain", flat=True)):
            raise _SsoRefusal("email_domain", f"{email} is not in one of this org's single sign-on domains.")
        identity = sso_identity_get(org=org, subject=str(claims["sub"]))
        user = identity.user if identity else User.objects.filter(email=email).first()
        if user is not None and not user.is_active:
            raise _SsoRefusal("user_deactivated", "This account is deactivated. Ask your org's admin.")
        mapped_role = role_from_groups(connection=connection, claims=claims)
        membership = Membership.objects.filter(org=org, user=user).first() if user else None
        if membership is None:
            membership = member_invite(
                org=org, email=user.email if user else email, role=mapped_role or connection.default_role,
                actor=actor, acting_role=Role.OWNER,
            )
            user = membership.user
        elif mapped_role and membership.role != Role.OWNER and membership.role != mapped_role:
            member_role_change(org=org, membership=membership, role=mapped_role, actor=actor, acting_role=Role.OWNER)
        if identity is None:
            identity = SsoIdentity.objects.create(org=org, user=user, subject=str(claims["sub"]))
        identity.last_login_at = timezone.now()
        identity.save(update_fields=["last_login_at"])
    return user


@transaction.atomic
def sso_client_secret_reencrypt(*, org: Org, actor: Actor) -> int:
    """Re-encrypts the org's client secret under the current key (`manage.py secrets_reencrypt`); 1 if it did."""
    connection = SsoConnection.objects.filter(org=org).exclude(encryption_key_id=current_key_id()).select_for_update().first()
    if connection is None:
        return 0
    previous_key_id = connection.encryption_key_id
    connection.encryption_key_id, connection.client_secret_ciphertext = secret_encrypt(
        sso_client_secret(connection), associated_data=_associated_data(connection)
    )
    connection.save(update_fields=["encryption_key_id", "client_secret_ciphertext"])
    audit_event_record(org_id=org.id, actor=actor, action="sso.reencrypt", target=connection,
                       changes={"encryption_key_id": [previous_key_id, connection.encryption_key_id]})
    return 1
