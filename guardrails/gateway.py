"""Guardrails on the proxy's hot path: the effective policy of a key, the request guard and the
response guards (a whole answer, or a stream through a look-behind buffer).

The effective policy of (org, team, key) is compiled once per process and generation
(`proxy.cache.GenerationCache`): no database access per request except on a cache miss.
A policy whose every action is `allow` scans nothing, unless PHI detection can change
where the request goes (see proxy/compliance.py).
"""
import dataclasses
import uuid

from guardrails.detection import PHI_CATEGORIES, CustomPattern, DetectorSet, Finding, Redactor, detector_set_build
from guardrails.models import GuardrailAction
from guardrails.selectors import actions_effective, custom_patterns_of_org, guardrail_policies_for_key
from proxy.cache import GenerationCache
from proxy.errors import ProxyError
from tenants.context import org_context

ALLOW, REDACT, BLOCK = GuardrailAction.ALLOW, GuardrailAction.REDACT, GuardrailAction.BLOCK
# Model output is not an injection attempt against the model; these are checked on requests only.
REQUEST_ONLY_CATEGORIES = frozenset({"prompt_injection"})
# The longest value a stream must still catch when it arrives split across chunks; text is
# sent on only once it is this far behind the newest character.
STREAM_LOOK_BEHIND_CHARS = 64
# Text is released once this many characters beyond the look-behind have arrived, scanned in one go.
STREAM_RELEASE_CHARS = 48
# A value still growing past this many characters is released anyway, so that the buffer stays bounded.
STREAM_MAX_HELD_CHARS = 4096
MAX_CACHED_POLICIES = 50_000
MAX_INPUT_DEPTH = 32


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledPolicy:
    actions: dict[str, str]
    detectors: DetectorSet
    request_categories: frozenset[str]  # every category whose action is not `allow`
    response_categories: frozenset[str]


def _policy_load(scope: tuple[uuid.UUID, uuid.UUID, uuid.UUID]) -> CompiledPolicy:
    org_id, team_id, key_id = scope
    with org_context(org_id):
        policies = guardrail_policies_for_key(org_id=org_id, team_id=team_id, key_id=key_id)
        custom = custom_patterns_of_org(org_id=org_id)
    org_policy = next((policy for policy in policies if policy.team_id is None and policy.key_id is None), None)
    overrides = [policy.actions for policy in policies if policy is not org_policy]
    actions = actions_effective(org_actions=org_policy.actions if org_policy else {}, overrides=overrides,
                                custom_names=[pattern.name for pattern in custom])
    detectors = detector_set_build(
        custom=tuple(CustomPattern(name=name, pattern=pattern) for name, pattern in custom),
        medical_record_patterns=tuple(org_policy.medical_record_patterns) if org_policy else (),
        health_plan_patterns=tuple(org_policy.health_plan_patterns) if org_policy else (),
    )
    scanned = frozenset(category for category, action in actions.items() if action != ALLOW)
    return CompiledPolicy(actions=actions, detectors=detectors, request_categories=scanned,
                          response_categories=scanned - REQUEST_ONLY_CATEGORIES)


_policies = GenerationCache(max_entries=MAX_CACHED_POLICIES)


def compiled_policy(*, org_id: uuid.UUID, team_id: uuid.UUID, key_id: uuid.UUID, generation: int) -> CompiledPolicy:
    return _policies.get((org_id, team_id, key_id), generation, _policy_load)


# Where the text of a request or an answer is ---------------------------------------------

def _strings_in(node, depth: int = 0):
    """(container, key) of every string inside a JSON value (a tool's input)."""
    if depth > MAX_INPUT_DEPTH:
        return
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(value, str):
            yield node, key
        elif isinstance(value, dict | list):
            yield from _strings_in(value, depth + 1)


def _content_slots(holder: dict, key: str):
    """A message's content: a string, or parts/blocks (OpenAI text parts, Anthropic text, tool_use, tool_result)."""
    content = holder.get(key)
    if isinstance(content, str):
        yield holder, key
        return
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            yield part, "text"
        if part.get("type") == "tool_use" and isinstance(part.get("input"), dict | list):
            yield from _strings_in(part["input"])
        if part.get("type") == "tool_result":
            yield from _content_slots(part, "content")


def _openai_message_slots(message: dict):
    yield from _content_slots(message, "content")
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield function, "arguments"


def request_text_slots(body: dict, endpoint: str):
    """(container, key) of every text the model will read: messages, system prompts, tool call
    arguments and tool results; for embeddings, the input strings."""
    if endpoint == "embeddings":
        if isinstance(body.get("input"), str):
            yield body, "input"
        elif isinstance(body.get("input"), list):
            yield from ((body["input"], index) for index, item in enumerate(body["input"]) if isinstance(item, str))
        return
    if endpoint == "messages":
        yield from _content_slots(body, "system")
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            yield from _openai_message_slots(message) if endpoint == "chat" else _content_slots(message, "content")


def response_text_slots(payload: dict, *, anthropic: bool):
    if anthropic:
        yield from _content_slots(payload, "content")
        return
    for choice in payload.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            yield from _openai_message_slots(choice["message"])


# The guard of one request ---------------------------------------------------------------

class GuardrailBlocked(Exception):
    def __init__(self, categories: list[str], *, response: bool):
        self.categories = categories
        self.response = response
        where = "The model's answer contained" if response else "The request contains"
        super().__init__(f"{where} content that the org's guardrail policy blocks: {', '.join(categories)}.")

    def as_proxy_error(self) -> ProxyError:
        # An answer that cannot be delivered is not the client's mistake, but a 5xx would make the
        # SDKs retry (and pay for) the same call: 422.
        return ProxyError(422 if self.response else 400, str(self), code="guardrail_blocked")


class RequestGuard:
    """Applies a compiled policy to one request and its answer, and keeps what the request log records."""

    def __init__(self, policy: CompiledPolicy, *, phi: bool):
        self.policy = policy
        self.phi = phi  # the team or key handles PHI, or a PHI detector fired
        self.redactor = Redactor()  # shared by request and answer: one value, one placeholder
        self.found: dict[str, dict[str, int]] = {"request": {}, "response": {}}
        self.blocked = False

    def _apply(self, texts: list[str], categories: frozenset[str], direction: str) -> list[str] | None:
        """The texts with redactions, or None when nothing needs redacting; raises GuardrailBlocked."""
        detectors, actions, counts = self.policy.detectors, self.policy.actions, self.found[direction]
        findings_per_text = [detectors.scan(text, categories) for text in texts]
        blocked = set()
        for findings in findings_per_text:
            for finding in findings:
                counts[finding.category] = counts.get(finding.category, 0) + 1
                if finding.category in PHI_CATEGORIES and direction == "request":
                    self.phi = True
                if actions.get(finding.category) == BLOCK:
                    blocked.add(finding.category)
        if blocked:
            self.blocked = True
            raise GuardrailBlocked(sorted(blocked), response=direction == "response")
        if not any(actions.get(f.category) == REDACT for findings in findings_per_text for f in findings):
            return None
        return [
            self.redactor.redact(text, [f for f in findings if actions.get(f.category) == REDACT])
            for text, findings in zip(texts, findings_per_text, strict=True)
        ]

    def request_check(self, body: dict, endpoint: str, *, phi_changes_routing: bool) -> None:
        """Scans (and redacts in place) what the request sends; raises ProxyError when a category is blocked."""
        categories = self.policy.request_categories
        if phi_changes_routing and not self.phi:
            categories = categories | PHI_CATEGORIES
        if not categories:
            return
        slots = list(request_text_slots(body, endpoint))
        try:
            redacted = self._apply([holder[key] for holder, key in slots], categories, "request")
        except GuardrailBlocked as blocked:
            raise blocked.as_proxy_error() from None
        for (holder, key), text in zip(slots, redacted or (), strict=False):
            holder[key] = text

    @property
    def scans_responses(self) -> bool:
        return bool(self.policy.response_categories)

    def response_check(self, payload: dict, *, anthropic: bool) -> bool:
        """Redacts a whole (non-streamed) answer in place; True when it changed. Raises GuardrailBlocked."""
        if not self.scans_responses:
            return False
        slots = list(response_text_slots(payload, anthropic=anthropic))
        redacted = self._apply([holder[key] for holder, key in slots], self.policy.response_categories, "response")
        for (holder, key), text in zip(slots, redacted or (), strict=False):
            holder[key] = text
        return redacted is not None

    def stream_scanner(self) -> "StreamScanner | None":
        return StreamScanner(self) if self.scans_responses else None

    def log_record(self) -> dict:
        """Categories, counts and actions: never a value."""
        found = set(self.found["request"]) | set(self.found["response"])
        return {
            "request": self.found["request"],
            "response": self.found["response"],
            "actions": {category: self.policy.actions.get(category, ALLOW) for category in sorted(found)},
            "phi": self.phi,
            "blocked": self.blocked,
        }


def request_guard_for(*, org_id: uuid.UUID, team_id: uuid.UUID, key_id: uuid.UUID, handles_phi: bool,
                      generation: int) -> RequestGuard:
    policy = compiled_policy(org_id=org_id, team_id=team_id, key_id=key_id, generation=generation)
    return RequestGuard(policy, phi=handles_phi)


# Streams ---------------------------------------------------------------------------------

class StreamScanner:
    """Scans streamed text through a look-behind buffer per choice (OpenAI) or content block
    (Anthropic): text goes on only once STREAM_LOOK_BEHIND_CHARS newer characters have arrived,
    and never cut through a value, so a value split across chunks is caught whole. The last
    characters already sent stay as context ("DOB:" before a date), scanned but not sent again."""

    def __init__(self, guard: RequestGuard):
        self.guard = guard
        self.held: dict[int, str] = {}
        self.sent_context: dict[int, str] = {}
        self.last_chunk: dict | None = None

    def _count(self, findings: list[Finding]) -> None:
        counts = self.guard.found["response"]
        for finding in findings:
            counts[finding.category] = counts.get(finding.category, 0) + 1

    def _scan(self, index: int, held: str) -> list[Finding]:
        """Findings in `held` coordinates; one that began in the context is clipped to what is still held."""
        context = self.sent_context.get(index, "")
        findings = [
            dataclasses.replace(finding, start=max(finding.start - len(context), 0), end=finding.end - len(context))
            for finding in self.guard.policy.detectors.scan(context + held, self.guard.policy.response_categories)
            if finding.end > len(context)
        ]
        actions = self.guard.policy.actions
        blocked = [finding for finding in findings if actions.get(finding.category) == BLOCK]
        if blocked:
            self._count(blocked)
            self.guard.blocked = True
            raise GuardrailBlocked(sorted({finding.category for finding in blocked}), response=True)
        return findings

    def _release(self, index: int, text: str, findings: list[Finding]) -> str:
        self._count(findings)
        self.sent_context[index] = (self.sent_context.get(index, "") + text)[-STREAM_LOOK_BEHIND_CHARS:]
        actions = self.guard.policy.actions
        return self.guard.redactor.redact(text, [f for f in findings if actions.get(f.category) == REDACT])

    def feed(self, index: int, text: str) -> str:
        """The text that may go to the client now (possibly empty)."""
        held = self.held.get(index, "") + text
        if len(held) < STREAM_LOOK_BEHIND_CHARS + STREAM_RELEASE_CHARS:
            # A scan costs about as much for 4 characters as for 100: text goes on in runs, not per token.
            self.held[index] = held
            return ""
        findings = self._scan(index, held)
        cut = len(held) - STREAM_LOOK_BEHIND_CHARS
        for finding in findings:
            if finding.start < cut < finding.end:
                cut = finding.start if len(held) - finding.start <= STREAM_MAX_HELD_CHARS else cut
        if cut <= 0:
            self.held[index] = held
            return ""
        self.held[index] = held[cut:]
        return self._release(index, held[:cut], [f for f in findings if f.end <= cut])

    def flush(self, index: int) -> str:
        held = self.held.pop(index, "")
        return self._release(index, held, self._scan(index, held)) if held else ""

    def pending(self) -> list[int]:
        return [index for index, text in self.held.items() if text]

    # OpenAI chunks (upstream shape, before any translation)

    def openai_chunk(self, payload: dict) -> None:
        """Rewrites the chunk's text deltas in place; a choice that finishes (or turns to a tool
        call) gets the rest of its held text."""
        self.last_chunk = payload
        for choice in payload.get("choices") or ():
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            index = choice.get("index", 0)
            text = self.feed(index, delta["content"]) if isinstance(delta.get("content"), str) else ""
            if choice.get("finish_reason") or delta.get("tool_calls"):
                text += self.flush(index)
            if text or "content" in delta:
                delta["content"] = text

    def openai_rest_chunk(self) -> dict | None:
        """The held text of choices whose stream ended without a finish_reason, as one more chunk."""
        choices = [{"index": index, "delta": {"content": self.flush(index)}, "finish_reason": None}
                   for index in self.pending()]
        if not choices:
            return None
        last = self.last_chunk or {}
        base = {name: last[name] for name in ("id", "object", "created", "model") if name in last}
        return {**base, "choices": choices}

    # Anthropic events (upstream shape, before any translation)

    def anthropic_event(self, event_type: str, payload: dict) -> list[tuple[str, dict]]:
        """Rewrites a text delta in place; returns the events carrying held text that must go before this one."""
        if event_type == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                delta["text"] = self.feed(payload.get("index", 0), delta["text"])
            return []
        if event_type == "content_block_stop":
            indexes = [payload.get("index", 0)]
        elif event_type in ("message_delta", "message_stop"):
            indexes = self.pending()
        else:
            return []
        return [
            ("content_block_delta", {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "text_delta", "text": text}})
            for index in indexes if (text := self.flush(index))
        ]

