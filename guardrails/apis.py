"""Management API for guardrail policies, custom detectors and the compliance settings of teams and keys.
Reads for every member; changes for org admins and owners only, so that a team admin cannot
loosen what the org decided (a team's PHI flag, its catalogue, its policy)."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from config.api import StrictSerializer
from guardrails import selectors, services
from guardrails.detection import CATEGORIES, CUSTOM_CATEGORY_PREFIX, CUSTOM_PATTERN_MAX_LENGTH
from guardrails.models import CustomDetector, GuardrailAction
from keys import selectors as key_selectors
from tenants import selectors as tenant_selectors
from tenants.apis import OrgApi
from tenants.models import Role

READ, ADMIN = Role.VIEWER, Role.ADMIN
ACTIONS_HELP = (f"Category to action ({', '.join(GuardrailAction.values)}). Categories: {', '.join(CATEGORIES)}, "
                f"and {CUSTOM_CATEGORY_PREFIX}<name> for the org's custom detectors. Replaces the whole map.")


def _actions_field(**options):
    return serializers.DictField(child=serializers.ChoiceField(choices=GuardrailAction.choices), help_text=ACTIONS_HELP,
                                 **options)


def _patterns_field(**options):
    return serializers.ListField(child=serializers.CharField(max_length=CUSTOM_PATTERN_MAX_LENGTH, trim_whitespace=False),
                                 **options)


def _stored_actions(policy) -> dict:
    return policy.actions if policy is not None else {}


# The org's policy -------------------------------------------------------------------------

class OrgPolicyOutput(serializers.Serializer):
    actions = serializers.DictField(child=serializers.CharField(), help_text="As set for the org.")
    effective_actions = serializers.DictField(child=serializers.CharField(),
                                              help_text="Every category, defaults included.")
    medical_record_patterns = serializers.ListField(child=serializers.CharField())
    health_plan_patterns = serializers.ListField(child=serializers.CharField())


class OrgPolicyInput(StrictSerializer):
    actions = _actions_field(required=False)
    medical_record_patterns = _patterns_field(required=False, help_text="Extra medical record number formats.")
    health_plan_patterns = _patterns_field(required=False, help_text="Extra health plan member id formats.")


def _org_policy_body(org) -> dict:
    policy = selectors.guardrail_policy_get(org=org)
    return {
        "actions": _stored_actions(policy),
        "effective_actions": selectors.guardrail_actions_effective(org=org),
        "medical_record_patterns": policy.medical_record_patterns if policy else [],
        "health_plan_patterns": policy.health_plan_patterns if policy else [],
    }


class OrgGuardrailPolicyApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN}

    @extend_schema(responses=OrgPolicyOutput)
    def get(self, request, org):
        return Response(OrgPolicyOutput(_org_policy_body(self.org)).data)

    @extend_schema(request=OrgPolicyInput, responses=OrgPolicyOutput)
    def patch(self, request, org):
        data = OrgPolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.org_guardrail_policy_update(org=self.org, actor=self.actor, **data.validated_data)
        return Response(OrgPolicyOutput(_org_policy_body(self.org)).data)


# Teams -------------------------------------------------------------------------------------

class TeamGuardrailsOutput(serializers.Serializer):
    team_id = serializers.UUIDField()
    actions = serializers.DictField(child=serializers.CharField(), help_text="The team's override.")
    effective_actions = serializers.DictField(child=serializers.CharField(), help_text="The org's, tightened by the team's.")
    handles_phi = serializers.BooleanField()
    approved_aliases = serializers.ListField(child=serializers.CharField(), allow_null=True)


class TeamGuardrailsInput(StrictSerializer):
    actions = _actions_field(required=False)
    handles_phi = serializers.BooleanField(
        required=False, help_text="Every request of the team's keys is PHI: HIPAA-eligible deployments only.")
    approved_aliases = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, allow_null=True,
        help_text="The team's approved-model catalogue, on top of each key's list; null: no catalogue.")


def _team_body(org, team) -> dict:
    return {
        "team_id": team.id,
        "actions": _stored_actions(selectors.guardrail_policy_get(org=org, team=team)),
        "effective_actions": selectors.guardrail_actions_effective(org=org, team=team),
        "handles_phi": team.handles_phi,
        "approved_aliases": team.approved_aliases,
    }


class TeamGuardrailsApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN}

    @extend_schema(responses=TeamGuardrailsOutput)
    def get(self, request, org, team_id):
        team = tenant_selectors.team_get(org=self.org, team_id=team_id)
        return Response(TeamGuardrailsOutput(_team_body(self.org, team)).data)

    @extend_schema(request=TeamGuardrailsInput, responses=TeamGuardrailsOutput)
    def patch(self, request, org, team_id):
        team = tenant_selectors.team_get(org=self.org, team_id=team_id)
        data = TeamGuardrailsInput(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.team_guardrails_update(org=self.org, team=team, actor=self.actor, **data.validated_data)
        return Response(TeamGuardrailsOutput(_team_body(self.org, team)).data)


# Keys --------------------------------------------------------------------------------------

class KeyGuardrailsOutput(serializers.Serializer):
    key_id = serializers.UUIDField()
    actions = serializers.DictField(child=serializers.CharField(), help_text="The key's override.")
    effective_actions = serializers.DictField(child=serializers.CharField(),
                                              help_text="The org's, tightened by the team's and the key's.")
    handles_phi = serializers.BooleanField()
    team_handles_phi = serializers.BooleanField()


class KeyGuardrailsInput(StrictSerializer):
    actions = _actions_field(required=False)
    handles_phi = serializers.BooleanField(
        required=False, help_text="Every request with this key is PHI: HIPAA-eligible deployments only.")


def _key_body(org, key) -> dict:
    return {
        "key_id": key.id,
        "actions": _stored_actions(selectors.guardrail_policy_get(org=org, key=key)),
        "effective_actions": selectors.guardrail_actions_effective(org=org, key=key),
        "handles_phi": key.handles_phi,
        "team_handles_phi": key.team.handles_phi,
    }


class KeyGuardrailsApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN}

    @extend_schema(responses=KeyGuardrailsOutput)
    def get(self, request, org, key_id):
        key = key_selectors.virtual_key_get(org=self.org, key_id=key_id)
        return Response(KeyGuardrailsOutput(_key_body(self.org, key)).data)

    @extend_schema(request=KeyGuardrailsInput, responses=KeyGuardrailsOutput)
    def patch(self, request, org, key_id):
        key = key_selectors.virtual_key_get(org=self.org, key_id=key_id)
        data = KeyGuardrailsInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = services.key_guardrails_update(org=self.org, key=key, actor=self.actor, **data.validated_data)
        return Response(KeyGuardrailsOutput(_key_body(self.org, key)).data)


# Custom detectors --------------------------------------------------------------------------

class CustomDetectorOutput(serializers.ModelSerializer):
    category = serializers.SerializerMethodField()

    class Meta:
        model = CustomDetector
        fields = ["id", "name", "category", "pattern", "created_at", "updated_at"]

    def get_category(self, detector) -> str:
        return CUSTOM_CATEGORY_PREFIX + detector.name


class CustomDetectorInput(StrictSerializer):
    name = serializers.CharField(max_length=63, help_text=f"The category becomes {CUSTOM_CATEGORY_PREFIX}<name>.")
    pattern = serializers.CharField(
        max_length=CUSTOM_PATTERN_MAX_LENGTH, trim_whitespace=False,
        help_text="A regular expression; refused when it does not compile or risks catastrophic backtracking.")


class CustomDetectorUpdateInput(StrictSerializer):
    pattern = serializers.CharField(max_length=CUSTOM_PATTERN_MAX_LENGTH, trim_whitespace=False)


class CustomDetectorListApi(OrgApi):
    required_role = {"GET": READ, "POST": ADMIN}

    @extend_schema(responses=CustomDetectorOutput(many=True))
    def get(self, request, org):
        return self.paginated(selectors.custom_detector_list(org=self.org), CustomDetectorOutput)

    @extend_schema(request=CustomDetectorInput, responses={201: CustomDetectorOutput})
    def post(self, request, org):
        data = CustomDetectorInput(data=request.data)
        data.is_valid(raise_exception=True)
        detector = services.custom_detector_create(org=self.org, actor=self.actor, **data.validated_data)
        return Response(CustomDetectorOutput(detector).data, status=status.HTTP_201_CREATED)


class CustomDetectorDetailApi(OrgApi):
    required_role = {"GET": READ, "PATCH": ADMIN, "DELETE": ADMIN}

    @extend_schema(responses=CustomDetectorOutput)
    def get(self, request, org, detector_id):
        return Response(CustomDetectorOutput(selectors.custom_detector_get(org=self.org, detector_id=detector_id)).data)

    @extend_schema(request=CustomDetectorUpdateInput, responses=CustomDetectorOutput)
    def patch(self, request, org, detector_id):
        detector = selectors.custom_detector_get(org=self.org, detector_id=detector_id)
        data = CustomDetectorUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        detector = services.custom_detector_update(org=self.org, detector=detector, actor=self.actor,
                                                   **data.validated_data)
        return Response(CustomDetectorOutput(detector).data)

    @extend_schema(responses={204: None}, description="Also removes its category from every policy of the org.")
    def delete(self, request, org, detector_id):
        detector = selectors.custom_detector_get(org=self.org, detector_id=detector_id)
        services.custom_detector_delete(org=self.org, detector=detector, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
