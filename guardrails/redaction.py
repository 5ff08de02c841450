"""Redaction of personal data in text, with typed placeholders ([EMAIL_1]) that stay
consistent within one text. The detector set grows with the guardrails issue; this is
what the `redacted` request-logging level uses before anything is written."""
import re

CARD_CANDIDATE = re.compile(r"\b(?:\d[ -]?){13,19}\b")
PATTERNS = (
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("SECRET", re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|sk-ant-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,})\b")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b")),
    ("SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    ("PHONE", re.compile(r"(?<![\w+])\+?\d{1,3}?[ .-]?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")),
    ("IP_ADDRESS", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
)


def _luhn_valid(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        digit = int(char)
        if index % 2 == parity:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def text_redact(text: str) -> tuple[str, dict[str, int]]:
    """Returns the redacted text and how many values of each category were replaced."""
    placeholders: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}

    def placeholder(category: str, value: str) -> str:
        if (category, value) not in placeholders:
            counts[category] = counts.get(category, 0) + 1
            placeholders[(category, value)] = f"[{category}_{counts[category]}]"
        return placeholders[(category, value)]

    def card(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group())
        return placeholder("CARD", digits) if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group()

    text = CARD_CANDIDATE.sub(card, text)
    for category, pattern in PATTERNS:
        text = pattern.sub(lambda match, category=category: placeholder(category, match.group()), text)
    return text, counts
