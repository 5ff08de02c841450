"""Writes of guardrail policies, custom detectors and the compliance settings of teams and keys.

Each service validates, changes, records its audit event in the same transaction and, because
the proxy compiles policies per process, bumps the gateway cache generation after commit.
"""
from django.db import transaction
from django.utils import timezone

from audit.actors import Actor
from config.errors import Conflict, ValidationFailed
from guardrails import selectors
from guardrails.detection import (
    CATEGORIES,
    CUSTOM_CATEGORY_PREFIX,
    CUSTOM_PATTERN_NAME,
    CustomPatternInvalid,
    custom_pattern_validate,
)
from guardrails.models import CustomDetector, GuardrailAction, GuardrailPolicy
from keys import selectors as key_selectors
from keys.models import VirtualKey
from proxy.cache import gateway_change_record
from tenants.models import Org, Team

MAX_ORG_PATTERNS = 20
MAX_CUSTOM_DETECTORS = 50
UNSET = object()
# A suspicious instruction cannot be cut out of a prompt meaningfully: it is flagged or blocked.
ACTIONS_NOT_OFFERED = {"prompt_injection": frozenset({GuardrailAction.REDACT})}


def actions_validate(*, org: Org, actions) -> dict[str, str]:
    """A map of category to action; names every unknown category and every unknown action."""
    if not isinstance(actions, dict):
        raise ValidationFailed("Actions are a JSON object of category to action.", field="actions")
    custom = {CUSTOM_CATEGORY_PREFIX + name for name in selectors.custom_detector_names(org=org)}
    unknown = sorted(category for category in actions if category not in CATEGORIES and category not in custom)
    if unknown:
        raise ValidationFailed(
            f"Unknown categories: {', '.join(map(str, unknown))}. Known: {', '.join(CATEGORIES)}, "
            f"or {CUSTOM_CATEGORY_PREFIX}<name> of one of the org's custom detectors.", field="actions",
        )
    bad = sorted(f"{category}: {action!r}" for category, action in actions.items()
                 if not isinstance(action, str) or action not in GuardrailAction.values)
    if bad:
        raise ValidationFailed(f"Unknown actions ({'; '.join(bad)}); use one of {', '.join(GuardrailAction.values)}.",
                               field="actions")
    refused = sorted(f"{category}: {action}" for category, action in actions.items()
                     if action in ACTIONS_NOT_OFFERED.get(category, ()))
    if refused:
        raise ValidationFailed(f"Not offered: {'; '.join(refused)} (flag or block it instead).", field="actions")
    return dict(sorted(actions.items()))


def _patterns_validate(patterns, *, field: str) -> list[str]:
    if not isinstance(patterns, list) or any(not isinstance(pattern, str) for pattern in patterns):
        raise ValidationFailed("A list of regular expressions.", field=field)
    if len(patterns) > MAX_ORG_PATTERNS:
        raise ValidationFailed(f"At most {MAX_ORG_PATTERNS} patterns.", field=field)
    for position, pattern in enumerate(patterns):
        try:
            custom_pattern_validate(pattern)
        except CustomPatternInvalid as error:
            raise ValidationFailed(f"Pattern {position + 1}: {error}", field=field) from None
    return patterns


def _policy_save(*, org: Org, actor: Actor, team: Team | None, key: VirtualKey | None, fields: dict) -> GuardrailPolicy:
    policy = selectors.guardrail_policy_get(org=org, team=team, key=key) or GuardrailPolicy(org=org, team=team, key=key)
    changes = {name: [getattr(policy, name), value] for name, value in fields.items() if getattr(policy, name) != value}
    if changes or policy._state.adding:
        for name, value in fields.items():
            setattr(policy, name, value)
        policy.updated_at = timezone.now()
        policy.save()
        scope = "key" if key else "team" if team else "org"
        gateway_change_record(org=org, actor=actor, action=f"guardrail_policy.{scope}_update", target=key or team or policy,
                       changes=changes)
    return policy


@transaction.atomic
def org_guardrail_policy_update(*, org: Org, actor: Actor, actions=UNSET, medical_record_patterns=UNSET,
                                health_plan_patterns=UNSET) -> GuardrailPolicy:
    """The org's policy; categories it leaves out keep their defaults (docs/guardrails.md)."""
    fields = {}
    if actions is not UNSET:
        fields["actions"] = actions_validate(org=org, actions=actions)
    if medical_record_patterns is not UNSET:
        fields["medical_record_patterns"] = _patterns_validate(medical_record_patterns, field="medical_record_patterns")
    if health_plan_patterns is not UNSET:
        fields["health_plan_patterns"] = _patterns_validate(health_plan_patterns, field="health_plan_patterns")
    return _policy_save(org=org, actor=actor, team=None, key=None, fields=fields)


def _approved_aliases_validate(*, org: Org, approved_aliases) -> list[str] | None:
    if approved_aliases is None:
        return None
    if not isinstance(approved_aliases, list) or any(not isinstance(alias, str) for alias in approved_aliases):
        raise ValidationFailed("A list of alias names, or null for no team catalogue.", field="approved_aliases")
    unknown = sorted(set(approved_aliases) - key_selectors.alias_names(org=org))
    if unknown:
        raise ValidationFailed(f"Unknown aliases in this org: {', '.join(unknown)}.", field="approved_aliases")
    return sorted(set(approved_aliases))


@transaction.atomic
def team_guardrails_update(*, org: Org, team: Team, actor: Actor, actions=UNSET, handles_phi=UNSET,
                           approved_aliases=UNSET) -> Team:
    """A team's override (it can only tighten the org's actions), its PHI flag and its approved-model catalogue."""
    if actions is not UNSET:
        _policy_save(org=org, actor=actor, team=team, key=None,
                     fields={"actions": actions_validate(org=org, actions=actions)})
    fields = {}
    if handles_phi is not UNSET:
        fields["handles_phi"] = bool(handles_phi)
    if approved_aliases is not UNSET:
        fields["approved_aliases"] = _approved_aliases_validate(org=org, approved_aliases=approved_aliases)
    changes = {name: [getattr(team, name), value] for name, value in fields.items() if getattr(team, name) != value}
    if changes:
        for name, value in fields.items():
            setattr(team, name, value)
        team.save(update_fields=list(changes))
        gateway_change_record(org=org, actor=actor, action="team.compliance_update", target=team, changes=changes)
    return team


@transaction.atomic
def key_guardrails_update(*, org: Org, key: VirtualKey, actor: Actor, actions=UNSET, handles_phi=UNSET) -> VirtualKey:
    """A key's override (it can only tighten the org's and its team's actions) and its PHI flag."""
    if actions is not UNSET:
        _policy_save(org=org, actor=actor, team=None, key=key,
                     fields={"actions": actions_validate(org=org, actions=actions)})
    if handles_phi is not UNSET and key.handles_phi != bool(handles_phi):
        changes = {"handles_phi": [key.handles_phi, bool(handles_phi)]}
        key.handles_phi = bool(handles_phi)
        key.save(update_fields=["handles_phi"])
        gateway_change_record(org=org, actor=actor, action="virtual_key.compliance_update", target=key, changes=changes)
    return key


def _custom_detector_fields_validate(*, name=UNSET, pattern=UNSET) -> None:
    if name is not UNSET and (not isinstance(name, str) or not CUSTOM_PATTERN_NAME.fullmatch(name)):
        raise ValidationFailed("Use 1 to 63 lower-case letters, digits, '-' and '_', starting with a letter or digit.",
                               field="name")
    if pattern is not UNSET:
        try:
            custom_pattern_validate(pattern)
        except CustomPatternInvalid as error:
            raise ValidationFailed(str(error), field="pattern") from None


@transaction.atomic
def custom_detector_create(*, org: Org, name: str, pattern: str, actor: Actor) -> CustomDetector:
    _custom_detector_fields_validate(name=name, pattern=pattern)
    if selectors.custom_detector_list(org=org).filter(name=name).exists():
        raise Conflict("A custom detector with this name already exists in the org.", field="name")
    if selectors.custom_detector_list(org=org).count() >= MAX_CUSTOM_DETECTORS:
        raise ValidationFailed(f"An org has at most {MAX_CUSTOM_DETECTORS} custom detectors.")
    detector = CustomDetector.objects.create(org=org, name=name, pattern=pattern)
    gateway_change_record(org=org, actor=actor, action="custom_detector.create", target=detector,
                   changes={"name": [None, name], "pattern": [None, pattern]})
    return detector


@transaction.atomic
def custom_detector_update(*, org: Org, detector: CustomDetector, actor: Actor, pattern: str) -> CustomDetector:
    """Only the pattern changes: the name is the category that policies refer to."""
    _custom_detector_fields_validate(pattern=pattern)
    if pattern != detector.pattern:
        changes = {"pattern": [detector.pattern, pattern]}
        detector.pattern, detector.updated_at = pattern, timezone.now()
        detector.save(update_fields=["pattern", "updated_at"])
        gateway_change_record(org=org, actor=actor, action="custom_detector.update", target=detector, changes=changes)
    return detector


@transaction.atomic
def custom_detector_delete(*, org: Org, detector: CustomDetector, actor: Actor) -> None:
    """Also drops the detector's category from every policy of the org."""
    category = CUSTOM_CATEGORY_PREFIX + detector.name
    for policy in GuardrailPolicy.objects.filter(org=org, actions__has_key=category):
        policy.actions = {name: action for name, action in policy.actions.items() if name != category}
        policy.save(update_fields=["actions"])
    gateway_change_record(org=org, actor=actor, action="custom_detector.delete", target=detector,
                   changes={"name": [detector.name, None], "pattern": [detector.pattern, None]})
    detector.delete()
