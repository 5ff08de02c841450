"""The web console: server-rendered pages over the same services as the API."""
import functools

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse_lazy

from accounts.selectors import invite_path_for
from audit.actors import actor_from_request
from config.errors import DomainError, NotFound
from console.forms import EmailLoginForm, MemberInviteForm, TeamCreateForm
from tenants import selectors, services
from tenants.context import org_context
from tenants.models import Role


class InviteAcceptView(auth_views.PasswordResetConfirmView):
    """An invited person sets their first password through a signed, expiring link."""

    template_name = "console/invite_accept.html"
    success_url = reverse_lazy("console:login")

    def form_valid(self, form):
        messages.success(self.request, "Password set. You can log in now.")
        return super().form_valid(form)


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True


def org_page(view):
    """Resolves the org from the URL through the user's membership (else 404) and runs the view in its context."""

    @login_required
    @functools.wraps(view)
    def wrapper(request, org_slug, *args, **kwargs):
        with transaction.atomic():
            try:
                membership = selectors.membership_for_user_in_org(user=request.user, org_ref=org_slug)
            except NotFound:
                raise Http404("Org not found") from None
            with org_context(membership.org_id):
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
                invite_path = invite_path_for(invited[0].user)
                if invite_path:
                    message += f" Send them this link to set a password: {request.build_absolute_uri(invite_path)}"
                messages.success(request, message)
                return redirect("console:org", org_slug=org.slug)
    context = {
        "org": org,
        "role": role,
        "can_admin": role.at_least(Role.ADMIN),
        "teams": selectors.team_list(org=org),
        "members": selectors.membership_list(org=org),
        "team_form": team_form,
        "invite_form": invite_form,
    }
    return render(request, "console/org.html", context, status=400 if request.method == "POST" else 200)
