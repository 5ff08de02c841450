"""Management API of an org's single sign-on connection. Owners configure it; admins may read it."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from config.api import StrictSerializer
from config.errors import NotFound
from sso import services
from sso.models import SsoConnection
from sso.selectors import sso_connection_get, sso_domain_list
from tenants.apis import OrgApi
from tenants.models import Role

IDP_ROLE_CHOICES = [(role.value, role.label) for role in services.ROLES_FROM_IDP]


class SsoConnectionOutput(serializers.ModelSerializer):
    domains = serializers.SerializerMethodField()
    break_glass_email = serializers.EmailField(source="break_glass_user.email", allow_null=True, default=None)
    redirect_uri = serializers.SerializerMethodField(help_text="Register this redirect URI with the identity provider.")
    has_client_secret = serializers.SerializerMethodField(help_text="The secret itself is never returned.")
    default_role = serializers.ChoiceField(choices=IDP_ROLE_CHOICES)

    class Meta:
        model = SsoConnection
        fields = ["issuer", "client_id", "has_client_secret", "scopes", "domains", "default_role", "groups_claim", "group_roles",
                  "sso_only", "break_glass_email", "redirect_uri", "created_at", "updated_at"]

    def get_domains(self, connection) -> list[str]:
        return list(sso_domain_list(org=connection.org).values_list("domain", flat=True))

    def get_redirect_uri(self, connection) -> str:
        return services.sso_redirect_uri(request=self.context["request"], org=connection.org)

    def get_has_client_secret(self, connection) -> bool:
        return bool(connection.client_secret_ciphertext)


class SsoConnectionInput(StrictSerializer):
    issuer = serializers.CharField(max_length=500)
    client_id = serializers.CharField(max_length=255)
    client_secret = serializers.CharField(
        max_length=services.CLIENT_SECRET_MAX_LENGTH, required=False, write_only=True,
        help_text="Required when creating; omit it to keep the stored one. Encrypted at rest.",
    )
    scopes = serializers.CharField(max_length=500, default="openid email profile",
                                   help_text="Space-separated; add e.g. groups when the IdP releases groups on request.")
    domains = serializers.ListField(child=serializers.CharField(max_length=253), min_length=1, max_length=services.MAX_DOMAINS)
    default_role = serializers.ChoiceField(choices=IDP_ROLE_CHOICES, default=Role.MEMBER)
    groups_claim = serializers.CharField(max_length=100, allow_blank=True, default="groups")
    group_roles = serializers.DictField(child=serializers.ChoiceField(choices=IDP_ROLE_CHOICES), default=dict)
    sso_only = serializers.BooleanField(default=False)
    break_glass_email = serializers.EmailField(required=False, allow_null=True)


class SsoConnectionApi(OrgApi):
    """The org's OpenID Connect identity provider (GET, PUT to create or replace, DELETE)."""

    required_role = {"GET": Role.ADMIN, "PUT": Role.OWNER, "DELETE": Role.OWNER}

    def _output(self, connection):
        return SsoConnectionOutput(connection, context={"request": self.request}).data

    @extend_schema(responses=SsoConnectionOutput)
    def get(self, request, org):
        connection = sso_connection_get(org=self.org)
        if connection is None:
            raise NotFound("This org has no single sign-on.")
        return Response(self._output(connection))

    @extend_schema(request=SsoConnectionInput, responses=SsoConnectionOutput)
    def put(self, request, org):
        data = SsoConnectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        connection = services.sso_connection_save(org=self.org, actor=self.actor, **data.validated_data)
        return Response(self._output(connection))

    @extend_schema(responses={204: None})
    def delete(self, request, org):
        services.sso_connection_delete(org=self.org, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
