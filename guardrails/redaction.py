"""Redaction of personal data in text for the `redacted` request-logging level, on top of the
guardrails detectors (guardrails/detection.py): typed placeholders ([EMAIL_1], [CARD_1]) that
stay consistent within one text. Text beyond the detectors' scan limit is not logged."""
from guardrails.detection import Redactor, detector_set_build, max_scan_chars

# Prompt injection is not personal data: a logged prompt keeps it for the investigation.
REDACTED_CATEGORIES = frozenset({
    "email", "phone", "us_ssn", "payment_card", "iban", "ip_address", "date_of_birth", "medical_record_number",
    "health_plan_id", "us_npi", "postal_address", "secret", "person_name",
})


def text_redact(text: str) -> tuple[str, dict[str, int]]:
    """Returns the redacted text and how many distinct values of each category were replaced."""
    limit = max_scan_chars()
    unscanned = len(text) - limit
    text = text[:limit]
    redactor = Redactor()
    redacted = redactor.redact(text, detector_set_build().scan(text, REDACTED_CATEGORIES))
    if unscanned > 0:
        redacted += f"[UNSCANNED_{unscanned}_CHARACTERS_DROPPED]"
    return redacted, redactor.counts
