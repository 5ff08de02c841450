"""Management API for provider credentials, deployments, model aliases and virtual keys.
Views are thin: parse, call a service or selector, serialize. No response ever carries a
provider API key; a virtual key's secret appears once, in the answer that created or rotated it (after a
scheduled rotation: in the one reveal)."""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from config.api import StrictSerializer
from config.errors import NotFound
from keys import selectors, services
from keys.models import Deployment, ModelAlias, ProviderCredential, ProviderKind, VirtualKey
from tenants import selectors as tenant_selectors
from tenants.apis import OrgApi
from tenants.models import DataRegion, LoggingLevel, Role, Team, slug_validator

READ, ADMIN = Role.VIEWER, Role.ADMIN


class CredentialRefField(serializers.CharField):
    """A credential of the request's org, given by name or id."""

    def to_internal_value(self, data) -> ProviderCredential:
        ref = super().to_internal_value(data)
        try:
            return selectors.credential_get_by_ref(org=self.context["org"], ref=ref)
        except NotFound as exc:
            raise serializers.ValidationError(exc.message) from None


# Provider credentials --------------------------------------------------------------------

class CredentialOutput(serializers.ModelSerializer):
    class Meta:
        model = ProviderCredential
        fields = ["id", "name", "provider_kind", "encryption_key_id", "created_at", "updated_at"]


class CredentialInput(StrictSerializer):
    name = serializers.CharField(max_length=50, validators=[slug_validator])
    provider_kind = serializers.ChoiceField(choices=ProviderKind.choices)
    api_key = serializers.CharField(write_only=True, max_length=services.API_KEY_MAX_LENGTH, help_text="Write-only.")


class CredentialUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=50, validators=[slug_validator], required=False)
    api_key = serializers.CharField(
        write_only=True, max_length=services.API_KEY_MAX_LENGTH, required=False,
        help_text="Write-only; replaces the key.",
    )


class CredentialListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=CredentialOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.credential_list(org=self.org), CredentialOutput)

    @extend_schema(request=CredentialInput, responses={201: CredentialOutput})
    def post(self, request, org):
        data = CredentialInput(data=request.data)
        data.is_valid(raise_exception=True)
        credential = services.credential_create(org=self.org, actor=self.actor, **data.validated_data)
        return Response(CredentialOutput(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}

    @extend_schema(responses=CredentialOutput)
    def get(self, request, org, credential_id):
        return Response(CredentialOutput(selectors.credential_get(org=self.org, credential_id=credential_id)).data)

    @extend_schema(request=CredentialUpdateInput, responses=CredentialOutput)
    def patch(self, request, org, credential_id):
        credential = selectors.credential_get(org=self.org, credential_id=credential_id)
        data = CredentialUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.credential_update(
            org=self.org, credential=credential, actor=self.actor, **data.validated_data
        )
        return Response(CredentialOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, credential_id):
        credential = selectors.credential_get(org=self.org, credential_id=credential_id)
        services.credential_delete(org=self.org, credential=credential, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Deployments -----------------------------------------------------------------------------

class DeploymentOutput(serializers.ModelSerializer):
    credential = serializers.CharField(source="credential.name", allow_null=True, default=None)

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "provider_kind", "base_url", "upstream_model", "api_version", "credential", "region",
            "hipaa_eligible", *services.PRICE_FIELDS, "timeout_seconds", "max_output_tokens",
            "created_at", "updated_at",
        ]


def _price_field():
    return serializers.DecimalField(
        max_digits=12, decimal_places=6, required=False, allow_null=True, help_text="Per million tokens."
    )


class DeploymentInput(StrictSerializer):
    """Ranges and the rules between fields (credential kind, Azure api_version, SSRF) are the service's."""

    name = serializers.CharField(max_length=50)
    provider_kind = serializers.ChoiceField(choices=ProviderKind.choices)
    base_url = serializers.CharField(max_length=500)
    upstream_model = serializers.CharField(max_length=200)
    api_version = serializers.CharField(max_length=40, required=False, allow_blank=True)
    credential = CredentialRefField(required=False, allow_null=True, help_text="Name or id of a credential of the org.")
    region = serializers.ChoiceField(choices=DataRegion.choices, required=False)
    hipaa_eligible = serializers.BooleanField(required=False)
    price_input_per_mtok = _price_field()
    price_output_per_mtok = _price_field()
    price_embedding_per_mtok = _price_field()
    timeout_seconds = serializers.FloatField(required=False)
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True)


class DeploymentListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=DeploymentOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.deployment_list(org=self.org), DeploymentOutput)

    @extend_schema(request=DeploymentInput, responses={201: DeploymentOutput})
    def post(self, request, org):
        data = DeploymentInput(data=request.data, context={"org": self.org})
        data.is_valid(raise_exception=True)
        deployment = services.deployment_create(org=self.org, actor=self.actor, **data.validated_data)
        return Response(DeploymentOutput(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}

    @extend_schema(responses=DeploymentOutput)
    def get(self, request, org, deployment_id):
        return Response(DeploymentOutput(selectors.deployment_get(org=self.org, deployment_id=deployment_id)).data)

    @extend_schema(request=DeploymentInput(partial=True), responses=DeploymentOutput)
    def patch(self, request, org, deployment_id):
        deployment = selectors.deployment_get(org=self.org, deployment_id=deployment_id)
        data = DeploymentInput(data=request.data, partial=True, context={"org": self.org})
        data.is_valid(raise_exception=True)
        updated = services.deployment_update(
            org=self.org, deployment=deployment, actor=self.actor, **data.validated_data
        )
        return Response(DeploymentOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, deployment_id):
        deployment = selectors.deployment_get(org=self.org, deployment_id=deployment_id)
        services.deployment_delete(org=self.org, deployment=deployment, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Model aliases ---------------------------------------------------------------------------

class AliasRouteOutput(serializers.Serializer):
    deployment = serializers.CharField(source="deployment.name")
    deployment_id = serializers.UUIDField()
    position = serializers.IntegerField()
    weight = serializers.IntegerField()


class AliasOutput(serializers.ModelSerializer):
    routes = AliasRouteOutput(many=True, help_text="In the order the proxy tries them: by position, then weighted.")

    class Meta:
        model = ModelAlias
        fields = ["id", "name", "routes", "created_at"]


class AliasRouteInput(StrictSerializer):
    deployment = serializers.CharField(max_length=100, help_text="Name or id of a deployment of the org.")
    position = serializers.IntegerField(required=False, help_text="0 first; higher positions are fallbacks. Default 0.")
    weight = serializers.IntegerField(required=False, help_text="Share of load within a position. Default 1.")


class AliasInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    routes = AliasRouteInput(many=True, help_text="Replaces the whole route list.")


class AliasListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=AliasOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.alias_list(org=self.org), AliasOutput)

    @extend_schema(request=AliasInput, responses={201: AliasOutput})
    def post(self, request, org):
        data = AliasInput(data=request.data)
        data.is_valid(raise_exception=True)
        alias = services.alias_create(org=self.org, actor=self.actor, **data.validated_data)
        body = AliasOutput(selectors.alias_get(org=self.org, alias_id=alias.id)).data
        return Response(body, status=status.HTTP_201_CREATED)


class AliasDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}

    @extend_schema(responses=AliasOutput)
    def get(self, request, org, alias_id):
        return Response(AliasOutput(selectors.alias_get(org=self.org, alias_id=alias_id)).data)

    @extend_schema(request=AliasInput(partial=True), responses=AliasOutput)
    def patch(self, request, org, alias_id):
        alias = selectors.alias_get(org=self.org, alias_id=alias_id)
        data = AliasInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.alias_update(org=self.org, alias=alias, actor=self.actor, **data.validated_data)
        # Read again: the routes prefetched with `alias` are the ones before the update.
        return Response(AliasOutput(selectors.alias_get(org=self.org, alias_id=alias.id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, org, alias_id):
        alias = selectors.alias_get(org=self.org, alias_id=alias_id)
        services.alias_delete(org=self.org, alias=alias, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Virtual keys ----------------------------------------------------------------------------

class VirtualKeyOutput(serializers.ModelSerializer):
    team_id = serializers.UUIDField()
    team = serializers.CharField(source="team.slug")
    created_by = serializers.EmailField(source="created_by.email", allow_null=True, default=None)

    class Meta:
        model = VirtualKey
        fields = [
            "id", "name", "team_id", "team", "allowed_aliases", "metadata", "prefix", "last_four",
            "created_by", "created_at", "expires_at", "revoked_at", "logging_level", "rotation_days", "next_rotation_at",
        ]


class VirtualKeySecretOutput(VirtualKeyOutput):
    secret = serializers.CharField(help_text="Shown once; store it now.")

    class Meta(VirtualKeyOutput.Meta):
        fields = [*VirtualKeyOutput.Meta.fields, "secret"]


def _rotation_days_field():
    return serializers.IntegerField(
        required=False, allow_null=True,
        help_text="Rotate the secret every this many days (1 to 3650; null: never). The new secret is revealed "
                  "once through reveal-successor/; the previous one keeps working for the grace period.",
    )


class VirtualKeyInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    team_id = serializers.UUIDField()
    allowed_aliases = serializers.ListField(
        child=serializers.CharField(max_length=100),
        help_text=f"Alias names, or [{services.ALL_ALIASES!r}] for every alias.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, help_text=f"At most {services.METADATA_MAX_KEYS} keys.")
    logging_level = serializers.ChoiceField(
        choices=LoggingLevel.choices, required=False, allow_null=True,
        help_text="Lowers the request-logging level for this key (never raises it).",
    )
    rotation_days = _rotation_days_field()


class VirtualKeyUpdateInput(StrictSerializer):
    rotation_days = _rotation_days_field()


class VirtualKeyRotateInput(StrictSerializer):
    grace_seconds = serializers.IntegerField(
        help_text="How long the previous secrets keep working: 0 (at once) to 30 days in seconds."
    )


class VirtualKeyApi(OrgApi):
    """Org admins manage every key; a member who is admin of a team manages that team's keys.
    The team is the one of the key in the URL, unless a subclass says otherwise."""

    def request_team(self, request, kwargs) -> Team | None:
        return selectors.virtual_key_get(org=self.org, key_id=kwargs["key_id"]).team


class VirtualKeyListApi(VirtualKeyApi):
    required_role = {"GET": READ, "POST": ADMIN}
    team_admin_methods = ("POST",)

    def request_team(self, request, kwargs) -> Team | None:
        team_id = request.data.get("team_id") if isinstance(request.data, dict) else None
        try:
            return tenant_selectors.team_get(org=self.org, team_id=team_id)
        except NotFound:
            return None

    @extend_schema(responses=VirtualKeyOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.virtual_key_list(org=self.org), VirtualKeyOutput)

    @extend_schema(request=VirtualKeyInput, responses={201: VirtualKeySecretOutput})
    def post(self, request, org):
        data = VirtualKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        key, secret = services.virtual_key_create(
            org=self.org, team=tenant_selectors.team_get(org=self.org, team_id=fields["team_id"]),
            name=fields["name"], allowed_aliases=fields["allowed_aliases"], expires_at=fields.get("expires_at"),
            metadata=fields.get("metadata", {}), actor=self.actor, created_by=request.user,
            logging_level=fields.get("logging_level"), rotation_days=fields.get("rotation_days"),
        )
        key.secret = secret
        return Response(VirtualKeySecretOutput(key).data, status=status.HTTP_201_CREATED)


class VirtualKeyDetailApi(VirtualKeyApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}
    team_admin_methods = ("PATCH", "DELETE")

    @extend_schema(responses=VirtualKeyOutput)
    def get(self, request, org, key_id):
        return Response(VirtualKeyOutput(selectors.virtual_key_get(org=self.org, key_id=key_id)).data)

    @extend_schema(request=VirtualKeyUpdateInput, responses=VirtualKeyOutput)
    def patch(self, request, org, key_id):
        key = selectors.virtual_key_get(org=self.org, key_id=key_id)
        data = VirtualKeyUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        if "rotation_days" in data.validated_data:
            key = services.virtual_key_rotation_schedule(
                org=self.org, key=key, rotation_days=data.validated_data["rotation_days"], actor=self.actor
            )
        return Response(VirtualKeyOutput(selectors.virtual_key_get(org=self.org, key_id=key.id)).data)

    @extend_schema(
        responses={204: None}, description="Revokes the key (idempotent); it stays listed with `revoked_at`."
    )
    def delete(self, request, org, key_id):
        key = selectors.virtual_key_get(org=self.org, key_id=key_id)
        services.virtual_key_revoke(org=self.org, key=key, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VirtualKeyRotateApi(VirtualKeyApi):
    required_role = {"POST": ADMIN}
    team_admin_methods = ("POST",)

    @extend_schema(request=VirtualKeyRotateInput, responses={200: VirtualKeySecretOutput})
    def post(self, request, org, key_id):
        key = selectors.virtual_key_get(org=self.org, key_id=key_id)
        data = VirtualKeyRotateInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = services.virtual_key_rotate(
            org=self.org, key=key, grace_seconds=data.validated_data["grace_seconds"], actor=self.actor
        )
        key.secret = secret
        return Response(VirtualKeySecretOutput(key).data)


class VirtualKeySuccessorOutput(serializers.Serializer):
    id = serializers.UUIDField()
    last_four = serializers.CharField()
    secret = serializers.CharField(help_text="Shown once; store it now.")


class VirtualKeySuccessorRevealApi(VirtualKeyApi):
    required_role = {"POST": ADMIN}
    team_admin_methods = ("POST",)

    @extend_schema(
        request=None,
        responses={200: VirtualKeySuccessorOutput, 410: OpenApiResponse(description="Already revealed, or none pending.")},
        description="The secret made by the key's latest scheduled rotation, once: it is wiped as it is shown.",
    )
    def post(self, request, org, key_id):
        key = selectors.virtual_key_get(org=self.org, key_id=key_id)
        secret = services.virtual_key_successor_reveal(org=self.org, key=key, actor=self.actor)
        return Response(VirtualKeySuccessorOutput({"id": key.id, "last_four": secret[-4:], "secret": secret}).data)


# Secret rotation report ------------------------------------------------------------------

class SecretRotationReportOutput(serializers.Serializer):
    kind = serializers.CharField(help_text="provider_credential or sso_client_secret")
    id = serializers.UUIDField()
    name = serializers.CharField()
    updated_at = serializers.DateTimeField()
    age_days = serializers.IntegerField()


class SecretRotationReportApi(OrgApi):
    """Secrets older than the org's rotation policy (`secret_rotation_days`): replace them at the provider."""

    required_role = {"GET": ADMIN}

    @extend_schema(responses=SecretRotationReportOutput(many=True))
    def get(self, request, org):
        return Response(SecretRotationReportOutput(selectors.secrets_due_for_rotation(org=self.org), many=True).data)
