"""Reads of guardrail policies and custom detectors, through the org-scoped managers."""
import uuid

from django.db.models import Q, QuerySet

from guardrails.detection import CATEGORIES, CUSTOM_CATEGORY_PREFIX
from guardrails.models import CustomDetector, GuardrailAction, GuardrailPolicy
from keys.models import VirtualKey
from tenants.models import Org, Team
from tenants.selectors import object_by_id_or_not_found

STRICTNESS = {GuardrailAction.ALLOW: 0, GuardrailAction.FLAG: 1, GuardrailAction.REDACT: 2, GuardrailAction.BLOCK: 3}
# What an org gets before it configures anything: credentials never leave the gateway, and
# suspected prompt injection is recorded. An org's own detectors exist to keep their values out.
DEFAULT_ACTIONS = {"secret": GuardrailAction.REDACT, "prompt_injection": GuardrailAction.FLAG}
CUSTOM_DEFAULT_ACTION = GuardrailAction.REDACT


def actions_effective(*, org_actions: dict, overrides: list[dict], custom_names) -> dict[str, str]:
    """Every category's action: the defaults, replaced by the org's, tightened (never loosened) by overrides."""
    actions = {category: DEFAULT_ACTIONS.get(category, GuardrailAction.ALLOW) for category in CATEGORIES}
    actions |= {CUSTOM_CATEGORY_PREFIX + name: CUSTOM_DEFAULT_ACTION for name in custom_names}
    actions |= {category: action for category, action in org_actions.items() if category in actions}
    for override in overrides:
        for category, action in override.items():
            if category in actions and STRICTNESS[action] > STRICTNESS[actions[category]]:
                actions[category] = action
    return actions


def guardrail_policy_get(*, org: Org, team: Team | None = None, key: VirtualKey | None = None) -> GuardrailPolicy | None:
    """The org's policy (no team, no key) or the team's or the key's override; None when there is none."""
    return GuardrailPolicy.objects.filter(org=org, team=team, key=key).first()


def guardrail_policies_for_key(*, org_id: uuid.UUID, team_id: uuid.UUID, key_id: uuid.UUID) -> list[GuardrailPolicy]:
    """The org's policy and the overrides of one team and one key: everything the proxy combines for a key."""
    scopes = Q(team__isnull=True, key__isnull=True) | Q(team_id=team_id) | Q(key_id=key_id)
    return list(GuardrailPolicy.objects.filter(scopes, org_id=org_id))


def custom_detector_list(*, org: Org) -> QuerySet[CustomDetector]:
    return CustomDetector.objects.filter(org=org).order_by("name")


def custom_detector_names(*, org: Org) -> set[str]:
    return set(custom_detector_list(org=org).values_list("name", flat=True))


def custom_detector_get(*, org: Org, detector_id) -> CustomDetector:
    return object_by_id_or_not_found(custom_detector_list(org=org), detector_id, "Custom detector")


def custom_patterns_of_org(*, org_id: uuid.UUID) -> list[tuple[str, str]]:
    """(name, pattern) of the org's custom detectors, for the proxy's compiled policy."""
    return list(CustomDetector.objects.filter(org_id=org_id).order_by("name").values_list("name", "pattern"))


def guardrail_actions_effective(*, org: Org, team: Team | None = None, key: VirtualKey | None = None) -> dict[str, str]:
    """What the proxy applies for the org, a team, or a key (whose team's override applies too)."""
    org_policy = guardrail_policy_get(org=org)
    team = key.team if key is not None else team
    overrides = [policy.actions for policy in (guardrail_policy_get(org=org, team=team) if team else None,
                                               guardrail_policy_get(org=org, key=key) if key else None) if policy]
    return actions_effective(org_actions=org_policy.actions if org_policy else {}, overrides=overrides,
                             custom_names=custom_detector_names(org=org))
