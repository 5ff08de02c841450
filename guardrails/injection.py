"""Prompt-injection heuristics: phrases that try to override the system prompt, extract it,
switch the model into a "jailbroken" persona, or smuggle chat-template delimiters, also when
they are hidden in a base64 blob. Each rule has a weight; when several rules fire in one text
every match gets the combined confidence 1 - prod(1 - weight), so that a prompt stacking
techniques scores higher than one phrase that might be innocent.

The rules run on the lowercased text, anchored where one of the literals they start with begins
a word."""
import base64
import binascii
import re
from collections.abc import Iterable, Iterator

# The phrases need an instruction-like object ("instructions", "system prompt", "restrictions"):
# "ignore the typos in my previous message" or "act as a tutor" must not fire.
_PREVIOUS = (r"(?:all\s+|any\s+|the\s+|your\s+|these\s+|those\s+|of\s+)*"
             r"(?:previous|prior|above|earlier|preceding|original|initial|system)")
_INSTRUCTIONS = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context|messages?)"
_OVERRIDE = r"(?:override|disable|turn\s+off|bypass|ignore|deactivate)"
INJECTION_RULES: tuple[tuple[str, float, tuple[str, ...], re.Pattern], ...] = (
    ("ignore_instructions", 0.9, ("ignore", "disregard", "forget", "skip", "override", "bypass", "discard"), re.compile(
        rf"(?:ignore|disregard|forget|skip|override|bypass|discard)\s+{_PREVIOUS}\s+{_INSTRUCTIONS}")),
    ("ignore_instructions", 0.8, ("ignore", "disregard", "forget"), re.compile(
        r"(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:you\s+were\s+told\s+|(?:said|written)\s+)?"
        r"(?:above|before|so\s+far|previously)")),
    ("reveal_system_prompt", 0.85, ("reveal", "print", "show", "display", "repeat", "output", "leak", "dump", "tell me",
                                    "give me", "write out", "recite"), re.compile(
        r"(?:reveal|print|show|display|repeat|output|leak|dump|tell\s+me|give\s+me|write\s+out|recite)\s+"
        r"(?:me\s+)?(?:your|the|all\s+of\s+your|the\s+full|your\s+full|your\s+entire|the\s+entire)\s+"
        r"(?:system\s+prompt|system\s+message|initial\s+(?:prompt|instructions)|hidden\s+(?:prompt|instructions)|"
        r"developer\s+(?:message|prompt|instructions)|original\s+instructions|instructions\s+(?:you\s+were\s+given|above))")),
    ("reveal_system_prompt", 0.6, ("what",), re.compile(
        r"what\s+(?:is|was|are)\s+your\s+(?:system\s+prompt|initial\s+instructions)")),
    ("jailbreak_persona", 0.9, ("you are", "act as", "pretend to be", "become", "do anything now"), re.compile(
        r"(?:you\s+are\s+(?:now\s+)?|act\s+as\s+|pretend\s+to\s+be\s+|become\s+)(?:dan|stan|dude|aim)\b|do\s+anything\s+now\b")),
    ("jailbreak_persona", 0.85, ("pretend", "imagine", "act as if", "roleplay", "role-play"), re.compile(
        r"(?:pretend|imagine|act\s+as\s+if|roleplay|role-play)\b[^.\n]{0,80}?"
        r"\b(?:no|without|free\s+of|free\s+from|not\s+bound\s+by)\s+"
        r"(?:any\s+)?(?:restrictions|rules|filters|guidelines|limitations|censorship|content\s+polic(?:y|ies)|ethical\s+guidelines)")),
    ("jailbreak_persona", 0.75, ("dev", "god", "jailbreak", "unrestricted", "enable"), re.compile(
        r"(?:developer|god|jailbreak|unrestricted|dev)\s+mode\s+(?:enabled|activated|on)\b"
        r"|enable\s+(?:developer|jailbreak|god)\s+mode\b")),
    ("override_safety", 0.85, ("override", "disable", "turn off", "bypass", "ignore", "deactivate"), re.compile(
        r"(?:override|disable|turn\s+off|bypass|ignore|deactivate)\s+(?:your|the|all)\s+(?:safety|content|moderation|ethical)\s+"
        r"(?:filters?|policy|policies|guidelines|guardrails|restrictions|settings)")),
    ("delimiter_injection", 0.8, ("<", "[inst]", "[/inst]", "##"), re.compile(
        r"</?(?:system|assistant|im_start|im_end|sys)>|<\|(?:im_start|im_end|system|assistant|endoftext)\|>|\[/?inst\]|<</?sys>>|"
        r"^#{2,}\s*(?:system|new\s+instructions?)\s*:?\s*$", re.M)),
    ("new_instructions", 0.5, ("new", "updated", "real", "actual", "system override"), re.compile(
        r"(?:new|updated|real|actual)\s+(?:system\s+)?instructions\s*:|system\s+override\b")),
)
BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
DIGIT_RUN = re.compile(r"[0-9]+")
BASE64_RULE_WEIGHT = 0.9


def _rules_by_anchor() -> dict[str, list[tuple[str, float, re.Pattern]]]:
    rules: dict[str, list[tuple[str, float, re.Pattern]]] = {}
    for name, weight, anchors, pattern in INJECTION_RULES:
        for anchor in anchors:
            rules.setdefault(anchor, []).append((name, weight, pattern))
    return rules


RULES_BY_ANCHOR = _rules_by_anchor()


def _rule_matches(lowered: str) -> Iterator[tuple[int, int, str, float]]:
    """The rules are tried only where one of their anchors (the literals their alternatives start
    with) starts a word: `str.find` is much cheaper than a regex scan of the whole text."""
    for anchor, rules in RULES_BY_ANCHOR.items():
        position = lowered.find(anchor)
        while position != -1:
            if not lowered[position - 1:position].isalnum():
                for name, weight, pattern in rules:
                    match = pattern.match(lowered, position)
                    if match is not None:
                        yield match.start(), match.end(), name, weight
            position = lowered.find(anchor, position + 1)


def _hidden_in_base64(blob: str) -> bool:
    try:
        decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return any(True for _ in _rule_matches(decoded.lower()))


def _base64_blobs(text: str, digit_positions: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Runs of 40+ base64 characters around the given digit positions: a blob that long almost
    always holds a digit, and this spares a character-class scan of the whole text."""
    end = 0
    for position in digit_positions:
        if position < end or not (text[position - 1:position] in BASE64_CHARS or text[position + 1:position + 2].isalpha()):
            continue
        start = position
        while start > 0 and text[start - 1] in BASE64_CHARS:
            start -= 1
        end = position
        while end < len(text) and text[end] in BASE64_CHARS:
            end += 1
        if end - start >= 40:
            padding = min(2, len(text) - end)
            while padding and text[end] == "=":
                end, padding = end + 1, padding - 1
            yield start, end


def prompt_injection_scan(text: str, lowered: str | None = None,
                          digit_positions: Iterable[int] | None = None) -> list[tuple[int, int, float, str]]:
    """(start, end, confidence, detector) for each suspicious span of `text`. `lowered` (text.lower(),
    same length) and `digit_positions` (where digit runs start) spare work when the caller has them."""
    matches = list(_rule_matches(text.lower() if lowered is None else lowered))
    if digit_positions is None:
        digit_positions = [match.start() for match in DIGIT_RUN.finditer(text)]
    matches.extend(
        (start, end, "base64_instructions", BASE64_RULE_WEIGHT)
        for start, end in _base64_blobs(text, digit_positions) if _hidden_in_base64(text[start:end])
    )
    if not matches:
        return []
    strongest: dict[str, float] = {}
    for _, _, name, weight in matches:
        strongest[name] = max(strongest.get(name, 0.0), weight)
    clean = 1.0
    for weight in strongest.values():
        clean *= 1.0 - weight
    combined = round(1.0 - clean, 4)
    return [(start, end, max(weight, combined), f"injection:{name}") for start, end, name, weight in matches]
