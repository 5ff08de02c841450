"""The web console: server-rendered pages over the same services as the API."""
import base64
import functools

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.selectors import AUTH_METHOD_PASSWORD, OrgAccessProblem
from accounts.session_store import AUTH_METHOD_KEY
from audit.actors import actor_from_request
from config.errors import DomainError, NotFound
from console.forms import EmailLoginForm, MemberInviteForm, MfaCodeForm, SsoDiscoveryForm, TeamCreateForm
from sso import services as sso_services
from sso.selectors import sso_connection_get
from tenants import selectors, services
from tenants.context import org_context
from tenants.models import Org, Role


def _safe_next(request, fallback: str = "") -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(candidate, {request.get_host()}, request.is_secure()):
        return candidate
    return fallback or reverse(settings.LOGIN_REDIRECT_URL)


def _with_next(url: str, next_url: str) -> str:
    from urllib.parse import urlencode

    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


# Logging in and out ------------------------------------------------------------------------------

class InviteAcceptView(auth_views.PasswordResetConfirmView):
    """An invited person sets their first password through a signed, expiring link."""

    template_name = "console/invite_accept.html"
    success_url = reverse_lazy("console:login")

    def form_valid(self, form):
        messages.success(self.request, "Password set. You can log in now.")
        return super().form_valid(form)


def _login_page(request, *, form=None, sso_form=None, status=200, error: str = ""):
    if error:
        messages.error(request, error)
    context = {
        "form": form or EmailLoginForm(request),
        "sso_form": sso_form or SsoDiscoveryForm(),
        "next": _safe_next(request, fallback=""),
    }
    return render(request, "console/login.html", context, status=status)


class LoginView(auth_views.LoginView):
    """Password login (django-axes counts the failures); the second factor follows when the person has one."""

    template_name = "console/login.html"
    authentication_form = EmailLoginForm

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "sso_form": SsoDiscoveryForm()}

    def form_valid(self, form):
        user = form.get_user()
        try:
            account_services.password_login_check(request=self.request, user=user)
        except DomainError as exc:
            form.add_error(None, exc.message)
            return self.form_invalid(form)
        if account_services.login_begin(request=self.request, user=user, method=AUTH_METHOD_PASSWORD):
            return redirect(self.get_success_url())
        return redirect(_with_next(reverse("console:mfa-challenge"), _safe_next(self.request, fallback="")))


def login_locked_out(request, original_response=None, credentials=None):
    """django-axes' lockout response (AXES_LOCKOUT_CALLABLE): the login page, saying what happened."""
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    return _login_page(
        request, form=EmailLoginForm(request, data=request.POST or None), status=429,
        error=f"Too many failed logins. This account is locked for {minutes} minutes from this address.",
    )


@require_POST
def logout(request):
    account_services.logout_complete(request=request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


@require_POST
def sso_start(request):
    """The login page's single sign-on form: the email's domain names the org and its IdP."""
    form = SsoDiscoveryForm(request.POST)
    if not form.is_valid():
        return _login_page(request, sso_form=form, status=400)
    try:
        return redirect(sso_services.sso_login_begin(request=request, email=form.cleaned_data["email"]))
    except DomainError as exc:
        return _login_page(request, sso_form=form, status=400, error=exc.message)


@require_GET
def sso_start_for_org(request, org_slug):
    """Signs in through one org's IdP: where the org switcher sends a session that cannot open that org."""
    org = Org.objects.filter(slug=org_slug).first()
    if org is None:
        raise Http404("Org not found")
    try:
        return redirect(sso_services.sso_login_begin_for_org(request=request, org=org))
    except DomainError as exc:
        return _login_page(request, status=400, error=exc.message)


@require_GET
def sso_callback(request, org_slug):
    try:
        _, org, logged_in = sso_services.sso_login_finish(request=request, org_slug=org_slug, params=request.GET)
    except DomainError as exc:
        return _login_page(request, status=400, error=exc.message)
    target = reverse("console:org", kwargs={"org_slug": org.slug})
    if logged_in:
        return redirect(target)
    return redirect(_with_next(reverse("console:mfa-challenge"), target))


@require_http_methods(["GET", "POST"])
def mfa_challenge(request):
    """The second step of a login, or the verification of a session that is not verified yet."""
    pending = account_services.login_pending_get(request=request)
    if pending is None and not request.user.is_authenticated:
        messages.info(request, "Log in first.")
        return redirect("console:login")
    form = MfaCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            account_services.mfa_challenge_verify(request=request, code=form.cleaned_data["code"])
        except DomainError as exc:
            form.add_error("code", exc.message)
            return render(request, "console/mfa_challenge.html", {"form": form, "next": _safe_next(request)},
                          status=exc.status_code)
        return redirect(_safe_next(request))
    return render(request, "console/mfa_challenge.html", {"form": form, "next": _safe_next(request)})


# Account security -------------------------------------------------------------------------------

def _qr_code_data_url(text: str) -> str:
    """An SVG QR code as a data: URL, so the page needs no script and no inline markup from a library."""
    svg = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2).to_string()
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


@login_required
@require_http_methods(["GET", "POST"])
def mfa_settings(request):
    """Two-factor authentication: set up (or replace) the authenticator app, backup codes, removal."""
    user = request.user
    form = MfaCodeForm(request.POST or None)
    backup_codes, status = None, 200
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "confirm" and form.is_valid():
                backup_codes = account_services.totp_enrolment_confirm(request=request, code=form.cleaned_data["code"])
                messages.success(request, "Two-factor authentication is on. Store your backup codes now.")
            elif action == "replace":
                account_services.totp_enrolment_begin(user=user)
                return redirect("console:mfa-settings")
            elif action == "backup-codes":
                backup_codes = account_services.backup_codes_regenerate(request=request)
                messages.success(request, "New backup codes: the old ones no longer work.")
            elif action == "remove":
                account_services.mfa_remove(request=request)
                messages.success(request, "Two-factor authentication is off.")
                return redirect("console:mfa-settings")
        except DomainError as exc:
            messages.error(request, exc.message)
            status = exc.status_code
    enrolled = account_selectors.mfa_enrolled(user=user)
    pending_device = account_selectors.totp_device_get(user=user, confirmed=False)
    if not enrolled and pending_device is None:
        pending_device = account_services.totp_enrolment_begin(user=user)
    context = {
        "enrolled": enrolled,
        "verified": user.is_verified(),
        "required_by": [membership.org.name for membership in account_selectors.mfa_requiring_memberships(user=user)],
        "backup_codes_remaining": account_selectors.backup_codes_remaining(user=user),
        "backup_codes": backup_codes,
        "form": form,
        "next": _safe_next(request, fallback=""),
    }
    if pending_device is not None and backup_codes is None:
        context["enrolment"] = {
            "qr_code": _qr_code_data_url(pending_device.config_url),
            "secret": base64.b32encode(pending_device.bin_key).decode(),
        }
    return render(request, "console/mfa_settings.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def session_list(request):
    if request.method == "POST":
        try:
            if request.POST.get("action") == "revoke-others":
                ended = account_services.user_sessions_revoke_others(request=request)
                messages.success(request, f"Logged out {ended} other session{'s' if ended != 1 else ''}.")
            else:
                account_services.user_session_revoke(request=request, public_id=request.POST.get("session", ""))
                messages.success(request, "Session revoked.")
        except DomainError as exc:
            messages.error(request, exc.message)
        return redirect("console:sessions")
    context = {
        "sessions": account_selectors.user_session_list(user=request.user),
        "current_session_key": request.session.session_key,
    }
    return render(request, "console/sessions.html", context)


# Orgs ------------------------------------------------------------------------------------------

def _access_problem_response(request, membership, problem: OrgAccessProblem):
    next_url = request.get_full_path() if request.method == "GET" else request.path
    if problem in (OrgAccessProblem.SSO_REQUIRED, OrgAccessProblem.SSO_SESSION_OF_ANOTHER_ORG):
        if sso_connection_get(org=membership.org) is not None:
            return redirect("console:sso-start-org", org_slug=membership.org.slug)
        messages.info(request, problem.value)
        return redirect(_with_next(reverse("console:login"), next_url))
    messages.info(request, problem.value)
    if problem == OrgAccessProblem.MFA_VERIFICATION_REQUIRED:
        return redirect(_with_next(reverse("console:mfa-challenge"), next_url))
    return redirect(_with_next(reverse("console:mfa-settings"), next_url))


def org_page(view):
    """Resolves the org from the URL through the user's membership (else 404), checks that this session
    may act there (SSO binding, MFA), and runs the view in the org's context."""

    @login_required
    @functools.wraps(view)
    def wrapper(request, org_slug, *args, **kwargs):
        with transaction.atomic():
            try:
                membership = selectors.membership_for_user_in_org(user=request.user, org_ref=org_slug)
            except NotFound:
                raise Http404("Org not found") from None
            with org_context(membership.org_id):
                problem = account_selectors.session_org_access_problem(
                    session=request.session, user=request.user, membership=membership
                )
                if problem is not None:
                    return _access_problem_response(request, membership, problem)
                return view(request, membership, *args, **kwargs)

    return wrapper


@login_required
def home(request):
    with transaction.atomic():
        memberships = selectors.memberships_of_user_dangerously_unscoped(user=request.user)
    if len(memberships) == 1:
        return redirect("console:org", org_slug=memberships[0].org.slug)
    return render(request, "console/home.html", {"memberships": memberships})


def _form_or_domain_error(form, action) -> bool:
    """Runs `action` for a valid form; a domain error becomes a form error. True when it succeeded."""
    if not form.is_valid():
        return False
    try:
        action(form.cleaned_data)
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return False
    return True


def _member_mfa_reset(request, org, role) -> None:
    membership = selectors.membership_get(org=org, membership_id=request.POST.get("mfa-reset-membership"))
    try:
        account_services.member_mfa_reset(
            org=org, membership=membership, actor=actor_from_request(request), acting_role=role
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Two-factor authentication of {membership.user.email} reset; they set it up again "
                                  "at their next login.")


@org_page
def org(request, membership):
    org, role = membership.org, Role(membership.role)
    team_form = TeamCreateForm(prefix="team")
    invite_form = MemberInviteForm(prefix="invite")
    if request.method == "POST":
        actor = actor_from_request(request)
        if not role.at_least(Role.ADMIN):
            messages.error(request, "This action needs the admin role or higher.")
            return redirect("console:org", org_slug=org.slug)
        if "mfa-reset-membership" in request.POST:
            try:
                _member_mfa_reset(request, org, role)
            except NotFound as exc:
                messages.error(request, exc.message)
            return redirect("console:org", org_slug=org.slug)
        if "team-slug" in request.POST:
            team_form = TeamCreateForm(request.POST, prefix="team")
            if _form_or_domain_error(team_form, lambda data: services.team_create(org=org, actor=actor, **data)):
                messages.success(request, f"Team {team_form.cleaned_data['slug']} created.")
                return redirect("console:org", org_slug=org.slug)
        else:
            invite_form = MemberInviteForm(request.POST, prefix="invite")
            invited = []

            def invite(data):
                invited.append(services.member_invite(org=org, actor=actor, acting_role=role, **data))

            if _form_or_domain_error(invite_form, invite):
                message = f"{invite_form.cleaned_data['email']} added to the org."
                invite_path = account_selectors.invite_path_for(invited[0].user)
                if invite_path:
                    message += f" Send them this link to set a password: {request.build_absolute_uri(invite_path)}"
                messages.success(request, message)
                return redirect("console:org", org_slug=org.slug)
    members = selectors.membership_list(org=org)
    context = {
        "org": org,
        "role": role,
        "can_admin": role.at_least(Role.ADMIN),
        "teams": selectors.team_list(org=org),
        "members": members,
        "mfa_user_ids": account_selectors.mfa_enrolled_user_ids(user_ids=[member.user_id for member in members]),
        "sso": sso_connection_get(org=org),
        "team_form": team_form,
        "invite_form": invite_form,
        "signed_in_with": request.session.get(AUTH_METHOD_KEY, AUTH_METHOD_PASSWORD),
    }
    return render(request, "console/org.html", context, status=400 if request.method == "POST" else 200)
