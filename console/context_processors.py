from django.db import transaction

from tenants.selectors import memberships_of_user_dangerously_unscoped


def org_switcher(request) -> dict:
    """The orgs of the logged-in person for the top bar's org switcher, and the one being viewed."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def memberships():
        with transaction.atomic():
            return memberships_of_user_dangerously_unscoped(user=user)

    match = getattr(request, "resolver_match", None)
    return {
        "switcher_memberships": memberships,  # called by the template only when it renders the switcher
        "current_org_slug": match.kwargs.get("org_slug") if match else None,
    }
