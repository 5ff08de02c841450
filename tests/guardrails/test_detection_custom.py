"""Custom per-org patterns and the configurable medical-record / health-plan patterns."""
import logging
import time

import pytest

from guardrails.detection import (
    CUSTOM_PATTERN_MAX_LENGTH,
    CustomPattern,
    CustomPatternInvalid,
    custom_pattern_validate,
    detector_set_build,
)


@pytest.mark.parametrize("pattern", [
    r"ORD-\d{6}",
    r"\bPRJ-[A-Z]{3}-\d+\b",
    r"(?:alpha|beta)-\d{4}",
    r"(?>\w+\s?)+END",           # atomic group: no backtracking into it
    r"(?:\w++\s?)+END",          # possessive inner quantifier
    r"\p{Lu}{2}\d{6}",           # `regex`-only syntax: accepted, bounded by the time limit
    r"(?:ab|cd)+",
    r"\d{3}-\d{2}-\d{4}",           # counts multiply to 24
    r"[A-Z]{2,4}\d{6,12}",
    r"(?:a|ab)+c",               # not ambiguous: after "a" only "b" or the next "a" can follow
])
def test_safe_patterns_are_accepted(pattern):
    custom_pattern_validate(pattern)


@pytest.mark.parametrize(("pattern", "message"), [
    (r"ORD-(\d{6}", "does not compile: missing )"),
    (r"[z-a]", "does not compile: bad character range"),
    (r"(a+)+$", "catastrophic backtracking (nested quantifiers"),
    (r"(\w+\s?)*END", "catastrophic backtracking (nested quantifiers"),
    (r"(a|a)*b", "catastrophic backtracking (alternatives that can match the same text"),
    (r"(?:a|aa)+b", "catastrophic backtracking (alternatives that can match the same text"),
    (r"(?:\d\d|1\d)+x", "catastrophic backtracking (alternatives that can match the same text"),
    (r"\d*", "matches the empty string"),
    (r"(?:a{1000}){1000}", "multiply to more than 10000"),
    (r"x{20000}", "multiply to more than 10000"),
    (123, "non-empty string"),
    ("", "non-empty string"),
    ("a" * (CUSTOM_PATTERN_MAX_LENGTH + 1), f"longer than {CUSTOM_PATTERN_MAX_LENGTH}"),
])
def test_invalid_and_dangerous_patterns_are_rejected_with_the_reason(pattern, message):
    with pytest.raises(CustomPatternInvalid) as error:
        custom_pattern_validate(pattern)
    assert message in str(error.value)


def test_custom_findings_carry_the_custom_category():
    detectors = detector_set_build(custom=(CustomPattern("order_id", r"ORD-\d{6}"),))
    text = "refund ORD-123456 and ORD-654321 for jane@example.com"
    findings = detectors.scan(text)
    assert [(finding.category, text[finding.start:finding.end]) for finding in findings] == [
        ("custom:order_id", "ORD-123456"), ("custom:order_id", "ORD-654321"), ("email", "jane@example.com")]
    assert detectors.scan(text, frozenset({"custom:order_id"}))[0].detector == "custom:order_id"
    assert [finding.category for finding in detectors.scan(text, frozenset({"email"}))] == ["email"]


def test_a_slow_pattern_is_cut_off_by_the_time_limit(caplog):
    # Polynomial rather than exponential, so the static check lets it through; the time limit stops it.
    slow = r"\d*\d*\d*\d*[a-z]"
    custom_pattern_validate(slow)
    detectors = detector_set_build(custom=(CustomPattern("slow", slow),))
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="guardrails.detection"):
        findings = detectors.scan("9" * 3000 + "! jane@example.com")
    assert time.perf_counter() - started < 1.0
    assert [finding.category for finding in findings] == ["email"]
    assert "custom:slow timed out" in caplog.text


def test_stored_invalid_patterns_are_skipped_not_fatal(caplog):
    with caplog.at_level(logging.WARNING, logger="guardrails.detection"):
        detectors = detector_set_build(custom=(CustomPattern("bad", r"(a+)+"), CustomPattern("good", r"ORD-\d{6}")),
                                       medical_record_patterns=(r"(unclosed",))
    assert [finding.category for finding in detectors.scan("ORD-123456 aaaa")] == ["custom:good"]
    assert "skipping custom:bad pattern" in caplog.text and "skipping medical record pattern" in caplog.text


def test_configured_medical_record_and_health_plan_patterns_need_their_context_words():
    detectors = detector_set_build(medical_record_patterns=(r"ZZ\d{4}-[A-Z]{2}",), health_plan_patterns=(r"HP\*\d{5}",))
    text = "MRN ZZ1234-AB; member id HP*12345; shelf ZZ9999-CD; code HP*54321"
    assert [(finding.category, text[finding.start:finding.end]) for finding in detectors.scan(text)] == [
        ("medical_record_number", "ZZ1234-AB"), ("health_plan_id", "HP*12345")]
    assert detector_set_build().scan("MRN ZZ1234-AB") == []


def test_configured_patterns_without_digits_are_still_searched():
    detectors = detector_set_build(medical_record_patterns=(r"[A-Z]{4}-[A-Z]{4}",))
    text = "MRN ABCD-EFGH, no digits anywhere"
    assert [(finding.category, text[finding.start:finding.end]) for finding in detectors.scan(text)] == [
        ("medical_record_number", "ABCD-EFGH")]
