import uuid

from django.db.models import QuerySet

from config.errors import NotFound
from tenants.context import user_context
from tenants.models import Membership, Org, Team, TeamMembership, TeamPermission

TEAM_ADMIN_PERMISSION = "manage_team"


def uuid_or_not_found(value, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found.") from None


def object_by_id_or_not_found(queryset: QuerySet, object_id, what: str):
    """One row of an (org-scoped) queryset by id; a malformed or unknown id is the same 404."""
    found = queryset.filter(id=uuid_or_not_found(object_id, what)).first()
    if found is None:
        raise NotFound(f"{what} not found.")
    return found


def memberships_of_user_dangerously_unscoped(*, user) -> QuerySet[Membership]:
    """The one read that happens before an org is chosen: a user's own memberships.

    Needs an enclosing transaction; PostgreSQL allows it through the `org_lookup`
    policy on `app.current_user_id`, so it can only ever return this user's rows.
    """
    with user_context(user.pk):
        return list(Membership.dangerously_unscoped.select_related("org").filter(user=user).order_by("org__slug"))


def membership_for_user_in_org(*, user, org_ref: str) -> Membership:
    """`org_ref` is a slug or an id; an org the user is not in is reported as not found."""
    for membership in memberships_of_user_dangerously_unscoped(user=user):
        if org_ref in (membership.org.slug, str(membership.org_id)):
            return membership
    raise NotFound("Org not found.")


def org_get_by_ref(*, org_ref: str) -> Org:
    lookup = {"slug": org_ref}
    try:
        lookup = {"id": uuid.UUID(org_ref)}
    except ValueError:
        pass
    try:
        return Org.objects.get(**lookup)
    except Org.DoesNotExist:
        raise NotFound("Org not found.") from None


def team_list(*, org: Org) -> QuerySet[Team]:
    return Team.objects.filter(org=org).order_by("slug")


def team_get(*, org: Org, team_id) -> Team:
    try:
        return Team.objects.get(org=org, id=uuid_or_not_found(team_id, "Team"))
    except Team.DoesNotExist:
        raise NotFound("Team not found.") from None


def membership_list(*, org: Org) -> QuerySet[Membership]:
    return Membership.objects.filter(org=org).select_related("user").order_by("user__email")


def membership_get(*, org: Org, membership_id) -> Membership:
    try:
        return Membership.objects.select_related("user").get(
            org=org, id=uuid_or_not_found(membership_id, "Member")
        )
    except Membership.DoesNotExist:
        raise NotFound("Member not found.") from None


def team_member_list(*, org: Org, team: Team) -> QuerySet[TeamMembership]:
    return (
        TeamMembership.objects.filter(org=org, team=team)
        .select_related("membership__user")
        .order_by("membership__user__email")
    )


def team_member_get(*, org: Org, team: Team, team_membership_id) -> TeamMembership:
    try:
        return TeamMembership.objects.select_related("membership__user").get(
            org=org, team=team, id=uuid_or_not_found(team_membership_id, "Team member")
        )
    except TeamMembership.DoesNotExist:
        raise NotFound("Team member not found.") from None


def team_admin_user_ids(*, org: Org, team: Team) -> set[int]:
    return set(
        TeamPermission.objects.filter(
            org=org, content_object=team, permission__codename=TEAM_ADMIN_PERMISSION
        ).values_list("user_id", flat=True)
    )


def user_is_team_admin(*, user, team: Team) -> bool:
    return user.has_perm(f"tenants.{TEAM_ADMIN_PERMISSION}", team)
