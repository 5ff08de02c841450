"""Management API for orgs, teams and members. Views are thin: parse, call a service or selector, serialize."""
import contextlib

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import MasterKeyPrincipal
from accounts.models import AdminToken
from accounts.selectors import invite_path_for, session_org_access_problem
from accounts.services import admin_token_effective_role
from audit.actors import acting_as, actor_from_request
from config.api import Pagination, StrictSerializer
from tenants import selectors, services
from tenants.context import org_context
from tenants.models import DataRegion, LoggingLevel, Membership, Org, Role, Team, TeamMembership, slug_validator, time_zone_validator
from tenants.webhooks import org_webhook_signing_secret


class OrgApi(APIView):
    """Base of every org-scoped endpoint (URL `.../orgs/<org>/...`).

    Resolves the org through the caller's membership (another org is a 404, so its
    existence does not leak), enters the org context for the whole request, and checks
    the caller's role against `required_role`, a map from HTTP method to the least role.
    `team_admin_methods` also admit a member who is admin of the team in the URL.
    """

    required_role: dict[str, Role] = {}
    team_admin_methods: tuple[str, ...] = ()

    def dispatch(self, request, *args, **kwargs):
        with transaction.atomic(), contextlib.ExitStack() as self.context_stack:
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, MasterKeyPrincipal):
            raise exceptions.PermissionDenied("The master key may only create orgs.")
        membership = selectors.membership_for_user_in_org(user=request.user, org_ref=kwargs["org"])
        self.org = membership.org
        self.membership = membership
        self.acting_role = Role(membership.role)
        if isinstance(request.auth, AdminToken):
            if request.auth.org_id != membership.org_id:
                raise exceptions.NotFound("Org not found.")
            self.acting_role = admin_token_effective_role(token=request.auth, membership_role=membership.role)
        self.context_stack.enter_context(org_context(self.org.id))
        if request.auth is None:  # a console session: bound to how it logged in (SSO, MFA)
            problem = session_org_access_problem(session=request.session, user=request.user, membership=membership)
            if problem is not None:
                raise exceptions.PermissionDenied(problem.value)
        self.actor = actor_from_request(request)
        self.context_stack.enter_context(acting_as(self.actor))  # for the field-level change history
        required = self.required_role.get(request.method)
        if required is None:
            raise exceptions.MethodNotAllowed(request.method)
        if self.acting_role.at_least(required) or self._team_admin_admits(request, kwargs):
            return
        raise exceptions.PermissionDenied(f"This action needs the {required.label.lower()} role or higher.")

    def request_team(self, request, kwargs) -> Team | None:
        """The team a team admin must administer for `team_admin_methods`: by default the one in the URL."""
        return selectors.team_get(org=self.org, team_id=kwargs["team_id"])

    def _team_admin_admits(self, request, kwargs) -> bool:
        if request.method not in self.team_admin_methods or not self.acting_role.at_least(Role.MEMBER):
            return False
        team = self.request_team(request, kwargs)
        return team is not None and selectors.user_is_team_admin(user=request.user, team=team)

    def paginated(self, queryset, serializer_class):
        paginator = Pagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


READ, WRITE, ADMIN, OWNER = Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER


# Orgs ---------------------------------------------------------------------------------

class OrgOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Org
        fields = ["id", "slug", "name", "data_region", "logging_level", "retention_days", "text_retention_days",
                  "mfa_required", "time_zone", "allow_unpriced_models", "webhook_url", "secret_rotation_days",
                  "created_at", "role"]

    def get_role(self, org) -> str | None:
        return self.context.get("roles", {}).get(org.id)


class OrgCreateInput(StrictSerializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=100)
    data_region = serializers.ChoiceField(choices=DataRegion.choices, default=DataRegion.US)
    owner_email = serializers.EmailField(max_length=254)


class OrgCreateOutput(serializers.Serializer):
    org = OrgOutput()
    owner_membership_id = serializers.UUIDField()
    owner_invite_url = serializers.CharField(allow_null=True, help_text="Where the owner sets a password; shown once.")


class OrgListApi(APIView):
    """GET: the caller's orgs. POST: create an org and its first owner (platform master key only)."""

    @extend_schema(responses=OrgOutput(many=True))
    def get(self, request):
        if isinstance(request.auth, MasterKeyPrincipal):
            raise exceptions.PermissionDenied("The master key may only create orgs.")
        with transaction.atomic():
            memberships = selectors.memberships_of_user_dangerously_unscoped(user=request.user)
        if isinstance(request.auth, AdminToken):
            memberships = [m for m in memberships if m.org_id == request.auth.org_id]
        roles = {m.org_id: m.role for m in memberships}
        return Response(OrgOutput([m.org for m in memberships], many=True, context={"roles": roles}).data)

    @extend_schema(request=OrgCreateInput, responses={201: OrgCreateOutput})
    def post(self, request):
        if not isinstance(request.auth, MasterKeyPrincipal):
            raise exceptions.PermissionDenied("Only the platform master key can create orgs.")
        data = OrgCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        org, membership = services.org_create(**data.validated_data, actor=actor_from_request(request))
        body = {
            "org": OrgOutput(org, context={"roles": {org.id: membership.role}}).data,
            "owner_membership_id": membership.id,
            "owner_invite_url": _invite_url(request, membership.user),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class OrgUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    data_region = serializers.ChoiceField(choices=DataRegion.choices, required=False)
    logging_level = serializers.ChoiceField(choices=LoggingLevel.choices, required=False)
    retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    text_retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    mfa_required = serializers.BooleanField(
        required=False, help_text="Every member needs a second factor (owners and admins always do)."
    )
    time_zone = serializers.CharField(max_length=64, required=False, validators=[time_zone_validator],
                                      help_text="IANA time zone in which budget periods start.")
    allow_unpriced_models = serializers.BooleanField(
        required=False, help_text="Serve deployments without a price (their requests count as zero cost against budgets).")
    webhook_url = serializers.URLField(max_length=500, required=False, allow_blank=True,
                                       help_text="Where signed alert webhooks are POSTed; blank turns them off.")
    secret_rotation_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)


class OrgDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN}

    @extend_schema(responses=OrgOutput)
    def get(self, request, org):
        return Response(OrgOutput(self.org, context={"roles": {self.org.id: self.membership.role}}).data)

    @extend_schema(request=OrgUpdateInput, responses=OrgOutput)
    def patch(self, request, org):
        data = OrgUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.org_update(org=self.org, actor=self.actor, acting_role=self.acting_role, **data.validated_data)
        return Response(OrgOutput(updated, context={"roles": {self.org.id: self.membership.role}}).data)


class WebhookSecretOutput(serializers.Serializer):
    signing_secret = serializers.CharField(help_text="HMAC-SHA256 key of the X-Gatehouse-Signature header.")


class OrgWebhookSecretApi(OrgApi):
    """GET: the secret that signs this org's webhook calls (admins and owners)."""

    required_role = {"GET": ADMIN}

    @extend_schema(responses=WebhookSecretOutput)
    def get(self, request, org):
        return Response({"signing_secret": org_webhook_signing_secret(self.org.id)})


# Teams --------------------------------------------------------------------------------

class TeamOutput(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "name", "logging_level", "created_at"]


class TeamInput(StrictSerializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=100)


class TeamUpdateInput(StrictSerializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator], required=False)
    name = serializers.CharField(max_length=100, required=False)
    logging_level = serializers.ChoiceField(
        choices=LoggingLevel.choices, required=False, allow_null=True,
        help_text="Lowers the org's request-logging level for this team's keys (never raises it).",
    )


class TeamListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=TeamOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.team_list(org=self.org), TeamOutput)

    @extend_schema(request=TeamInput, responses={201: TeamOutput})
    def post(self, request, org):
        data = TeamInput(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.team_create(org=self.org, actor=self.actor, **data.validated_data)
        return Response(TeamOutput(team).data, status=status.HTTP_201_CREATED)


class TeamDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}
    team_admin_methods = ("PATCH",)

    @extend_schema(responses=TeamOutput)
    def get(self, request, org, team_id):
        return Response(TeamOutput(selectors.team_get(org=self.org, team_id=team_id)).data)

    @extend_schema(request=TeamUpdateInput, responses=TeamOutput)
    def patch(self, request, org, team_id):
        team = selectors.team_get(org=self.org, team_id=team_id)
        data = TeamUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(TeamOutput(services.team_update(org=self.org, team=team, actor=self.actor, **data.validated_data)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, team_id):
        services.team_delete(org=self.org, team=selectors.team_get(org=self.org, team_id=team_id), actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamMemberOutput(serializers.ModelSerializer):
    membership_id = serializers.UUIDField(source="membership.id")
    email = serializers.EmailField(source="membership.user.email")
    is_team_admin = serializers.SerializerMethodField()

    class Meta:
        model = TeamMembership
        fields = ["id", "membership_id", "email", "is_team_admin", "created_at"]

    def get_is_team_admin(self, team_membership) -> bool:
        return team_membership.membership.user_id in self.context["team_admin_user_ids"]


class TeamMemberInput(StrictSerializer):
    membership_id = serializers.UUIDField()
    is_team_admin = serializers.BooleanField(default=False)


class TeamMemberListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}
    team_admin_methods = ("POST",)

    def _serialize(self, team, team_memberships, many=False):
        context = {"team_admin_user_ids": selectors.team_admin_user_ids(org=self.org, team=team)}
        return TeamMemberOutput(team_memberships, many=many, context=context).data

    @extend_schema(responses=TeamMemberOutput(many=True))
    def get(self, request, org, team_id):
        team = selectors.team_get(org=self.org, team_id=team_id)
        return Response(self._serialize(team, selectors.team_member_list(org=self.org, team=team), many=True))

    @extend_schema(request=TeamMemberInput, responses={201: TeamMemberOutput})
    def post(self, request, org, team_id):
        team = selectors.team_get(org=self.org, team_id=team_id)
        data = TeamMemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = selectors.membership_get(org=self.org, membership_id=data.validated_data["membership_id"])
        team_membership = services.team_member_add(
            org=self.org, team=team, membership=membership,
            is_team_admin=data.validated_data["is_team_admin"], actor=self.actor,
        )
        return Response(self._serialize(team, team_membership), status=status.HTTP_201_CREATED)


class TeamMemberDetailApi(OrgApi):
    required_role = {"DELETE": ADMIN}
    team_admin_methods = ("DELETE",)

    @extend_schema(responses={204: None})
    def delete(self, request, org, team_id, team_membership_id):
        team = selectors.team_get(org=self.org, team_id=team_id)
        team_membership = selectors.team_member_get(org=self.org, team=team, team_membership_id=team_membership_id)
        services.team_member_remove(org=self.org, team=team, team_membership=team_membership, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Members ------------------------------------------------------------------------------

class MemberOutput(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]


class MemberInviteOutput(MemberOutput):
    invite_url = serializers.SerializerMethodField(help_text="Where the invitee sets a password; shown once.")

    class Meta(MemberOutput.Meta):
        fields = [*MemberOutput.Meta.fields, "invite_url"]

    def get_invite_url(self, membership) -> str | None:
        return _invite_url(self.context["request"], membership.user)


def _invite_url(request, user) -> str | None:
    path = invite_path_for(user)
    return request.build_absolute_uri(path) if path else None


class MemberInviteInput(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class MemberUpdateInput(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MemberListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.membership_list(org=self.org), MemberOutput)

    @extend_schema(request=MemberInviteInput, responses={201: MemberInviteOutput})
    def post(self, request, org):
        data = MemberInviteInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.member_invite(
            org=self.org, actor=self.actor, acting_role=self.acting_role, **data.validated_data
        )
        return Response(MemberInviteOutput(membership, context={"request": request}).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(OrgApi):
    # Any member may remove themselves (leave); removing others needs admin, checked in the service.
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": READ}

    @extend_schema(responses=MemberOutput)
    def get(self, request, org, membership_id):
        return Response(MemberOutput(selectors.membership_get(org=self.org, membership_id=membership_id)).data)

    @extend_schema(request=MemberUpdateInput, responses=MemberOutput)
    def patch(self, request, org, membership_id):
        membership = selectors.membership_get(org=self.org, membership_id=membership_id)
        data = MemberUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.member_role_change(
            org=self.org, membership=membership, role=data.validated_data["role"],
            actor=self.actor, acting_role=self.acting_role,
        )
        return Response(MemberOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, membership_id):
        membership = selectors.membership_get(org=self.org, membership_id=membership_id)
        if membership.id != self.membership.id and not self.acting_role.at_least(ADMIN):
            raise exceptions.PermissionDenied("Removing another member needs the admin role or higher.")
        services.member_remove(org=self.org, membership=membership, actor=self.actor, acting_role=self.acting_role)
        return Response(status=status.HTTP_204_NO_CONTENT)
