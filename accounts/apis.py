from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from accounts import selectors, services
from accounts.models import AdminToken
from config.api import StrictSerializer
from tenants.apis import OrgApi
from tenants.models import Role
from tenants.selectors import membership_get


class AdminTokenOutput(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")

    class Meta:
        model = AdminToken
        fields = ["id", "name", "role", "email", "prefix", "last_four", "created_at", "expires_at", "revoked_at"]


class AdminTokenCreateOutput(AdminTokenOutput):
    secret = serializers.CharField(help_text="Shown once; store it now.")

    class Meta(AdminTokenOutput.Meta):
        fields = [*AdminTokenOutput.Meta.fields, "secret"]


class AdminTokenInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class AdminTokenListApi(OrgApi):
    """Tokens for the management API. Owners and admins see every token of the org, others their own."""

    required_role = {"GET": Role.VIEWER, "POST": Role.VIEWER}

    @extend_schema(responses=AdminTokenOutput(many=True))
    def get(self, request, org):
        user = None if self.acting_role.at_least(Role.ADMIN) else request.user
        return self.paginated(selectors.admin_token_list(org=self.org, user=user), AdminTokenOutput)

    @extend_schema(request=AdminTokenInput, responses={201: AdminTokenCreateOutput})
    def post(self, request, org):
        if request.auth is not None or not request.user.is_verified():
            raise exceptions.PermissionDenied(
                "Admin tokens can only be created from a console session verified with a second factor."
            )
        data = AdminTokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = services.admin_token_create(
            org=self.org, user=request.user, name=data.validated_data["name"],
            role=data.validated_data.get("role") or self.acting_role, acting_role=self.acting_role,
            expires_at=data.validated_data.get("expires_at"), actor=self.actor,
        )
        token.secret = secret
        return Response(AdminTokenCreateOutput(token).data, status=status.HTTP_201_CREATED)


class AdminTokenDetailApi(OrgApi):
    required_role = {"DELETE": Role.VIEWER}

    @extend_schema(responses={204: None})
    def delete(self, request, org, token_id):
        user = None if self.acting_role.at_least(Role.ADMIN) else request.user
        token = selectors.admin_token_get(org=self.org, token_id=token_id, user=user)
        services.admin_token_revoke(org=self.org, token=token, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberMfaResetApi(OrgApi):
    """Removes a member's second factor (a lost phone); audited, and all their sessions end."""

    required_role = {"DELETE": Role.ADMIN}

    @extend_schema(responses={204: None})
    def delete(self, request, org, membership_id):
        membership = membership_get(org=self.org, membership_id=membership_id)
        services.member_mfa_reset(org=self.org, membership=membership, actor=self.actor, acting_role=self.acting_role)
        return Response(status=status.HTTP_204_NO_CONTENT)
