import uuid

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.services import user_sessions_end
from audit.actors import Actor
from audit.services import audit_event_record
from config.errors import Conflict, PermissionDenied, ValidationFailed
from keys.ssrf import base_url_validate
from proxy.cache import gateway_cache_invalidate, gateway_change_record
from tenants.context import org_context
from tenants.models import ROLE_RANK, Membership, Org, Role, Team, TeamMembership
from tenants.selectors import TEAM_ADMIN_PERMISSION

User = get_user_model()

ORG_SETTINGS_FIELDS = ("name", "data_region", "logging_level", "retention_days", "text_retention_days", "mfa_required",
                       "time_zone", "allow_unpriced_models", "webhook_url", "secret_rotation_days")


def _changes(instance, fields: dict) -> dict:
    return {name: [getattr(instance, name), value] for name, value in fields.items() if getattr(instance, name) != value}


def _user_get_or_invite(*, email: str) -> User:
    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    return user or User.objects.create_user(email=email, password=None)


@transaction.atomic
def org_create(*, slug: str, name: str, data_region: str, owner_email: str, actor: Actor) -> tuple[Org, Membership]:
    if Org.objects.filter(slug=slug).exists():
        raise Conflict("An org with this slug already exists.", field="slug")
    org = Org(id=uuid.uuid4(), slug=slug, name=name, data_region=data_region)
    try:
        with transaction.atomic():
            org.save(force_insert=True)
    except IntegrityError:
        raise Conflict("An org with this slug already exists.", field="slug") from None
    owner = _user_get_or_invite(email=owner_email)
    with org_context(org.id):
        membership = Membership.objects.create(org=org, user=owner, role=Role.OWNER)
        audit_event_record(
            org_id=org.id, actor=actor, action="org.create", target=org,
            changes={"slug": [None, slug], "name": [None, name], "data_region": [None, data_region]},
        )
        audit_event_record(
            org_id=org.id, actor=actor, action="member.add", target=membership,
            changes={"email": [None, owner.email], "role": [None, Role.OWNER]},
        )
    return org, membership


@transaction.atomic
def org_update(*, org: Org, actor: Actor, acting_role: Role, **fields) -> Org:
    unknown = set(fields) - set(ORG_SETTINGS_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown org setting: {', '.join(sorted(unknown))}.")
    if "data_region" in fields and fields["data_region"] != org.data_region and acting_role != Role.OWNER:
        raise PermissionDenied("Only an owner can change the org's data region.")
    if fields.get("webhook_url"):
        base_url_validate(fields["webhook_url"], field="webhook_url")
    changes = _changes(org, fields)
    if changes:
        for name, value in fields.items():
            setattr(org, name, value)
        org.save(update_fields=list(changes))
        gateway_change_record(org=org, actor=actor, action="org.update", target=org, changes=changes)
    return org


@transaction.atomic
def team_create(*, org: Org, slug: str, name: str, actor: Actor) -> Team:
    if Team.objects.filter(org=org, slug=slug).exists():
        raise Conflict("A team with this slug already exists in the org.", field="slug")
    team = Team.objects.create(org=org, slug=slug, name=name)
    audit_event_record(
        org_id=org.id, actor=actor, action="team.create", target=team, changes={"slug": [None, slug], "name": [None, name]}
    )
    return team


@transaction.atomic
def team_update(*, org: Org, team: Team, actor: Actor, **fields) -> Team:
    if "slug" in fields and fields["slug"] != team.slug:
        if Team.objects.filter(org=org, slug=fields["slug"]).exists():
            raise Conflict("A team with this slug already exists in the org.", field="slug")
    changes = _changes(team, fields)
    if changes:
        for name, value in fields.items():
            setattr(team, name, value)
        team.save(update_fields=list(changes))
        audit_event_record(org_id=org.id, actor=actor, action="team.update", target=team, changes=changes)
        if "logging_level" in changes:
            transaction.on_commit(gateway_cache_invalidate)  # the proxy caches each key's levels
    return team


@transaction.atomic
def team_delete(*, org: Org, team: Team, actor: Actor) -> None:
    audit_event_record(
        org_id=org.id, actor=actor, action="team.delete", target=team, changes={"slug": [team.slug, None]}
    )
    team.delete()


def _assert_may_manage_role(*, acting_role: Role, role: Role) -> None:
    if role == Role.OWNER and acting_role != Role.OWNER:
        raise PermissionDenied("Only an owner can grant, change or remove the owner role.")
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(acting_role)]:
        raise PermissionDenied("You cannot grant a role above your own.")


def _locked_owner_count(*, org: Org) -> int:
    # Locks the owner rows so that two concurrent demotions cannot both see "another owner is left".
    return len(list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER)))


@transaction.atomic
def member_invite(*, org: Org, email: str, role: Role, actor: Actor, acting_role: Role) -> Membership:
    _assert_may_manage_role(acting_role=acting_role, role=role)
    user = _user_get_or_invite(email=email)
    if Membership.objects.filter(org=org, user=user).exists():
        raise Conflict("This person is already a member of the org.", field="email")
    membership = Membership.objects.create(org=org, user=user, role=role)
    audit_event_record(
        org_id=org.id, actor=actor, action="member.add", target=membership,
        changes={"email": [None, user.email], "role": [None, role]},
    )
    return membership


@transaction.atomic
def member_role_change(*, org: Org, membership: Membership, role: Role, actor: Actor, acting_role: Role) -> Membership:
    if membership.role == role:
        return membership
    if membership.user_id == actor.user_id and ROLE_RANK[Role(role)] > ROLE_RANK[Role(membership.role)]:
        raise PermissionDenied("You cannot raise your own role.")
    _assert_may_manage_role(acting_role=acting_role, role=membership.role)
    _assert_may_manage_role(acting_role=acting_role, role=role)
    if membership.role == Role.OWNER and _locked_owner_count(org=org) <= 1:
        raise Conflict("The last owner cannot be demoted; make another member owner first.", field="role")
    changes = {"role": [membership.role, role]}
    membership.role = role
    membership.save(update_fields=["role"])
    user_sessions_end(user=membership.user)  # a role change logs the person out everywhere
    audit_event_record(org_id=org.id, actor=actor, action="member.role_change", target=membership, changes=changes)
    return membership


@transaction.atomic
def member_remove(*, org: Org, membership: Membership, actor: Actor, acting_role: Role) -> None:
    if membership.user_id != actor.user_id:
        _assert_may_manage_role(acting_role=acting_role, role=membership.role)
    if membership.role == Role.OWNER and _locked_owner_count(org=org) <= 1:
        raise Conflict("The last owner cannot leave or be removed; make another member owner first.")
    for team_membership in TeamMembership.objects.filter(org=org, membership=membership).select_related("team"):
        remove_perm(TEAM_ADMIN_PERMISSION, membership.user, team_membership.team)
    audit_event_record(
        org_id=org.id, actor=actor, action="member.remove", target=membership,
        changes={"email": [membership.user.email, None], "role": [membership.role, None]},
    )
    membership.delete()


@transaction.atomic
def team_member_add(*, org: Org, team: Team, membership: Membership, is_team_admin: bool, actor: Actor) -> TeamMembership:
    if TeamMembership.objects.filter(org=org, team=team, membership=membership).exists():
        raise Conflict("This member is already in the team.", field="membership_id")
    team_membership = TeamMembership.objects.create(org=org, team=team, membership=membership)
    if is_team_admin:
        assign_perm(TEAM_ADMIN_PERMISSION, membership.user, team)
    audit_event_record(
        org_id=org.id, actor=actor, action="team.member_add", target=team_membership,
        changes={"team": [None, team.slug], "email": [None, membership.user.email], "team_admin": [None, is_team_admin]},
    )
    return team_membership


@transaction.atomic
def team_member_remove(*, org: Org, team: Team, team_membership: TeamMembership, actor: Actor) -> None:
    remove_perm(TEAM_ADMIN_PERMISSION, team_membership.membership.user, team)
    audit_event_record(
        org_id=org.id, actor=actor, action="team.member_remove", target=team_membership,
        changes={"team": [team.slug, None], "email": [team_membership.membership.user.email, None]},
    )
    team_membership.delete()
