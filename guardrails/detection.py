"""PII/PHI, secret and prompt-injection detection on the request path (docs/guardrails.md, "Detection").

Built-in detectors are Python `re` patterns whose candidates must pass a validator (Luhn,
IBAN mod-97, NPI check digit, SSN number rules, `ipaddress`, calendar dates, JWT header) or
sit next to a context word ("DOB", "MRN", "member ID"...), so that order numbers, timestamps
and version strings are not reported. Each detector first checks a cheap condition (a digit
cluster long enough, a literal prefix, a context word found with `str.find`) so that clean text
costs a few microseconds per detector.
Custom per-org patterns run on the `regex` package with a time limit per call; at most
GATEHOUSE_GUARDRAIL_MAX_SCAN_CHARS characters of a text are scanned.
"""
import base64
import binascii
import bisect
import dataclasses
import datetime
import functools
import ipaddress
import json
import logging
import math
import re
import re._constants as sre_constants
import re._parser as sre_parser
from collections.abc import Callable, Iterator

import phonenumbers
import regex
from django.conf import settings

from guardrails.injection import prompt_injection_scan

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = (
    "email", "phone", "us_ssn", "payment_card", "iban", "ip_address", "date_of_birth",
    "medical_record_number", "health_plan_id", "us_npi", "postal_address", "secret",
    "person_name", "prompt_injection",
)
# Identifiers that tie a request to a patient or to care (HIPAA's identifiers that are
# specific to people and health care). Email, phone, address and IP are personal data too,
# but alone they do not make a request PHI.
PHI_CATEGORIES: frozenset[str] = frozenset({
    "us_ssn", "date_of_birth", "medical_record_number", "health_plan_id", "us_npi", "person_name",
})
CHECKSUM_CATEGORIES: frozenset[str] = frozenset({"payment_card", "iban", "us_npi"})
CUSTOM_CATEGORY_PREFIX = "custom:"
CUSTOM_PATTERN_MAX_LENGTH = 500
CUSTOM_PATTERN_MAX_REPETITIONS = 10_000
REPETITION_COUNT = re.compile(r"\{(\d{1,9})(?:,(\d{0,9}))?\}")
CUSTOM_PATTERN_TIMEOUT_SECONDS = 0.02
CUSTOM_PATTERN_CONFIDENCE = 0.9
CUSTOM_PATTERN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    category: str
    start: int
    end: int
    confidence: float
    detector: str


@dataclasses.dataclass(frozen=True, slots=True)
class CustomPattern:
    name: str
    pattern: str


class CustomPatternInvalid(ValueError):
    pass


# --- validators -----------------------------------------------------------------------------

def _luhn_valid(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        digit = ord(char) - 48
        if index % 2 == parity:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _card_issuer_known(digits: str) -> bool:
    length, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return length in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16
    if two in (34, 37):
        return length == 15
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= length <= 19
    if digits.startswith("6011") or two == 65 or 644 <= int(digits[:3]) <= 649:
        return 16 <= length <= 19
    if two == 62 or 3528 <= four <= 3589:
        return 16 <= length <= 19
    if two in (50, 56, 57, 58, 63, 67):
        return 12 <= length <= 19
    return False


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def _iban_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _ssn_valid(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _date_plausible(year: int, month: int, day: int) -> bool:
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= date <= datetime.date.today()


def _numeric_date_plausible(first: str, second: str, third: str) -> bool:
    if len(first) == 4:
        return _date_plausible(int(first), int(second), int(third))
    if len(third) not in (2, 4) or len(first) > 2:
        return False
    year = int(third)
    if len(third) == 2:
        year += 2000 if year <= datetime.date.today().year % 100 else 1900
    return _date_plausible(year, int(first), int(second)) or _date_plausible(year, int(second), int(first))


def _jwt_header_valid(token: str) -> bool:
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


# --- detectors ------------------------------------------------------------------------------
#
# Python's `re` scans fast only for a pattern that starts with a literal or a character class,
# so the patterns below start with one and check the character before it in a lookbehind. One
# pass finds the digit clusters of the text; the detectors of digit-bearing values run only in
# small windows around clusters with enough digits, and the context words are found with
# `str.find` in the lowercased text.

# A validator gets the text and the match and returns the confidence, or None to drop the candidate.
Validator = Callable[[str, re.Match], float | None]
DIGIT_CLUSTER = re.compile(r"[0-9](?:[ ().:/-]*[0-9])*")
DIGITS_DELETED = str.maketrans("", "", "0123456789")


LONG_CLUSTER_DIGITS = 4


@dataclasses.dataclass(frozen=True, slots=True)
class ScanText:
    text: str
    lowered: str  # same length as text, so that offsets agree
    clusters: list[tuple[int, int, int]]  # (start, end, digit count) of each digit cluster
    long_clusters: list[tuple[int, int, int]]  # those with at least LONG_CLUSTER_DIGITS digits
    max_digits: int  # the most digits in one cluster

    @classmethod
    def of(cls, text: str) -> "ScanText":
        lowered = text.lower()
        if len(lowered) != len(text):  # a few characters ("İ") lowercase to two
            lowered = "".join(char.lower()[:1] for char in text)
        clusters = []
        for match in DIGIT_CLUSTER.finditer(text):
            value = match.group()
            digits = len(value) if value.isdigit() else len(value) - len(value.translate(DIGITS_DELETED))
            clusters.append((match.start(), match.end(), digits))
        return cls(text, lowered, clusters, [cluster for cluster in clusters if cluster[2] >= LONG_CLUSTER_DIGITS],
                   max((digits for _, _, digits in clusters), default=0))

    def windows(self, min_digits: int, before: int, after: int,
                shape: Callable[[str, int, int], bool] | None = None) -> list[list[int]]:
        """Merged [start, end) windows around the clusters with at least `min_digits` digits (and the
        `shape`, a test of the text and the cluster's span, when given)."""
        merged: list[list[int]] = []
        for start, end, digits in self.long_clusters if min_digits >= LONG_CLUSTER_DIGITS else self.clusters:
            if digits < min_digits or (shape is not None and not shape(self.text, start, end)):
                continue
            low, high = max(0, start - before), min(len(self.text), end + after)
            if merged and low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        return merged


def _confidence_of(validator: Validator | float) -> Validator:
    return validator if callable(validator) else (lambda text, match, confidence=validator: confidence)


class WindowDetector:
    """Candidates of one pattern near digit clusters, kept when the validator accepts them. The windows
    reach `before`/`after` characters beyond the cluster so that the lookarounds see real neighbours."""

    def __init__(self, category: str, name: str, pattern: re.Pattern, validator: Validator | float, *,
                 min_digits: int, before: int = 4, after: int = 2, shape: Callable[[str, int, int], bool] | None = None):
        self.category, self.name, self.pattern = category, name, pattern
        self.validator = _confidence_of(validator)
        self.min_digits, self.before, self.after, self.shape = min_digits, before, after, shape

    def candidates(self, scan: ScanText) -> Iterator[re.Match]:
        for low, high in scan.windows(self.min_digits, self.before, self.after, self.shape):
            yield from self.pattern.finditer(scan.text, low, high)

    def find(self, scan: ScanText) -> Iterator[Finding]:
        for match in self.candidates(scan):
            confidence = self.validator(scan.text, match)
            if confidence is not None:
                start, end = match.span("value") if "value" in self.pattern.groupindex else match.span()
                yield Finding(self.category, start, end, confidence, self.name)


class NeedleDetector:
    """Candidates of one pattern, searched only when one of `needles` (literals the pattern cannot
    match without) is in the text."""

    min_digits = 0

    def __init__(self, category: str, name: str, pattern: re.Pattern, validator: Validator | float,
                 needles: tuple[str, ...]):
        self.category, self.name, self.pattern, self.needles = category, name, pattern, needles
        self.validator = _confidence_of(validator)

    def find(self, scan: ScanText) -> Iterator[Finding]:
        if not any(needle in scan.text for needle in self.needles):
            return
        for match in self.pattern.finditer(scan.text):
            confidence = self.validator(scan.text, match)
            if confidence is not None:
                yield Finding(self.category, match.start(), match.end(), confidence, self.name)


VALUE_MAX_LENGTH = 64
SEPARATORS_AFTER_CONTEXT = re.compile(r"[\s:#=.]{0,6}")
CONFIGURED_VALUE_MAX_LENGTH = 200


class ContextDetector:
    """Values that only count after a context word ("DOB", "MRN", "NPI"...): the context words are
    found in the lowercased text, then the value patterns are tried for a match starting within `window`
    characters after each context word; per context word, the accepted value that starts first is reported."""

    def __init__(self, category: str, name: str, context: re.Pattern, values: tuple, validator: Validator | float, *,
                 needles: tuple[str, ...], window: int = 30, min_digits: int = 0):
        self.category, self.name, self.context, self.values, self.window = category, name, context, values, window
        self.validator = _confidence_of(validator)
        # Lowercase literals each context word starts with: the context pattern is only tried where one
        # of them starts a word, so the text is searched with `str.find` rather than a regex scan.
        self.needles = needles
        self.min_digits = min_digits  # the digits a value needs in one cluster: nothing to do without such a cluster

    def _value_matches(self, value, text: str, position: int, end: int) -> Iterator[re.Match]:
        """Matches of `value` from `position` on; only those starting by `end` count."""
        if isinstance(value, regex.Pattern):
            endpos = min(len(text), end + CONFIGURED_VALUE_MAX_LENGTH)
            try:
                if position == end:
                    match = value.match(text, position, endpos, timeout=CUSTOM_PATTERN_TIMEOUT_SECONDS)
                    if match is not None:
                        yield match
                else:
                    yield from value.finditer(text, position, endpos, timeout=CUSTOM_PATTERN_TIMEOUT_SECONDS)
            except TimeoutError:
                logger.warning("guardrails: a %s pattern timed out: %r", self.name, value.pattern)
            return
        # Bounded: a value must start by `end`, and none is longer than VALUE_MAX_LENGTH.
        endpos = min(len(text), end + VALUE_MAX_LENGTH)
        if position == end:
            match = value.match(text, position, endpos)
            if match is not None:
                yield match
        else:
            yield from value.finditer(text, position, endpos)

    def _value_at(self, text: str, position: int, limit: int) -> Finding | None:
        """The accepted value that starts first in [position, limit], trying the patterns in order."""
        accepted = None
        for value in self.values:
            for match in self._value_matches(value, text, position, limit):
                if match.start() > limit:
                    break
                confidence = self.validator(text, match)
                if confidence is not None:
                    accepted = Finding(self.category, match.start(), match.end(), confidence, self.name)
                    limit = match.start() - 1  # the next patterns only for a value that starts earlier
                    break
            if limit < position:
                break
        return accepted

    def _contexts(self, scan: ScanText) -> Iterator[re.Match]:
        lowered = scan.lowered
        for needle in self.needles:
            position = lowered.find(needle)
            while position != -1:
                if not lowered[position - 1:position].isalnum():
                    context = self.context.match(lowered, position)
                    if context is not None:
                        yield context
                position = lowered.find(needle, position + 1)

    def find(self, scan: ScanText) -> Iterator[Finding]:
        seen: set[tuple[int, int]] = set()
        for context in self._contexts(scan):
            # Most often the value follows right after "MRN: ", "DOB ", "member ID #": try there first.
            right_after = SEPARATORS_AFTER_CONTEXT.match(scan.text, context.end()).end()
            accepted = (self._value_at(scan.text, right_after, right_after)
                        or self._value_at(scan.text, context.end(), context.end() + self.window))
            if accepted is not None and (accepted.start, accepted.end) not in seen:
                seen.add((accepted.start, accepted.end))
                yield accepted


def _context_before(text: str, start: int, context: re.Pattern, window: int = 40) -> bool:
    return context.search(text, max(0, start - window), start) is not None


EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")


class EmailDetector:
    """From each "@": the local part backwards over the allowed characters, the domain forwards."""

    category = "email"
    name = "email"
    min_digits = 0

    def find(self, scan: ScanText) -> Iterator[Finding]:
        text = scan.text
        at = text.find("@")
        while at != -1:
            start = at
            while start > 0 and at - start < 64 and text[start - 1] in EMAIL_LOCAL_CHARS:
                start -= 1
            while start < at and text[start] in "._%+-":
                start += 1
            domain = EMAIL_DOMAIN.match(text, at + 1) if start < at else None
            if domain is not None:
                yield Finding(self.category, start, domain.end(), 0.95, self.name)
            at = text.find("@", at + 1)


PHONE_CANDIDATE = re.compile(r"[+(\d](?<![\w+.,/:-].)[\d\s().-]{5,21}\d(?![\w-]|[.,/:]\d)")
AREA_CODE = re.compile(r"\(\d{1,4}\)")
NOT_DIGIT = re.compile(r"\D")
US_PHONE_SHAPE = re.compile(r"(?:\(\d{3}\)\s?|(?<!\d)\d{3}[\s.-])\d{3}[\s.-]\d{4}(?!\d)")
PHONE_CONTEXT = re.compile(r"\b(?:phone|tel|telephone|call|mobile|cell|fax|whatsapp|sms|text\s+me|contact|reach\s+me)\b", re.I)


class PhoneDetector(WindowDetector):
    """Candidates that look like a phone number: an international "+" number, a (area) code, the US
    3-3-4 grouping, or any digit run after a context word such as "call" or "phone"; bare digit runs
    (order numbers) are left alone. Validated with `phonenumbers` (region US): a candidate holding
    one number is parsed and must be a valid number, a run holding several goes through its
    PhoneNumberMatcher (leniency VALID)."""

    def __init__(self):
        super().__init__("phone", "phonenumbers", PHONE_CANDIDATE, 0.85, min_digits=7, before=4, after=2)

    def find(self, scan: ScanText) -> Iterator[Finding]:
        for candidate in self.candidates(scan):
            value = candidate.group()
            if not 7 <= len(value) - len(value.translate(DIGITS_DELETED)) <= 15:
                continue
            shaped = value[0] == "+" or AREA_CODE.match(value) or US_PHONE_SHAPE.search(value)
            if not shaped and not _context_before(scan.text, candidate.start(), PHONE_CONTEXT, 30):
                continue
            if value[0] == "+" or US_PHONE_SHAPE.fullmatch(value):  # one number: parsing is cheaper than matching
                spans = [(0, len(value))] if _phone_number_valid(value) else []
            else:  # several numbers in one run of digits and separators: the matcher splits them
                spans = [(match.start, match.end) for match in
                         phonenumbers.PhoneNumberMatcher(value, "US", leniency=phonenumbers.Leniency.VALID)]
            if spans:
                has_context = not shaped or _context_before(scan.text, candidate.start(), PHONE_CONTEXT, 30)
                for start, end in spans:
                    yield Finding(self.category, candidate.start() + start, candidate.start() + end,
                                  0.95 if has_context else 0.85, self.name)


def _phone_number_valid(value: str) -> bool:
    digits = NOT_DIGIT.sub("", value)
    if (len(digits) == 10 and value[0] != "+") or (len(digits) == 11 and value.startswith("+1")):
        return _us_exchange_valid(digits[-10:-4])
    return _phone_number_parses_valid(value)


def _phone_number_parses_valid(value: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, "US"))
    except phonenumbers.NumberParseException:
        return False


@functools.lru_cache(maxsize=8192)
def _us_exchange_valid(area_code_and_exchange: str) -> bool:
    # phonenumbers decides a North American number's validity by its area code and exchange alone,
    # so one answer holds for the whole exchange (and the cache holds no one's number).
    return _phone_number_parses_valid(f"+1{area_code_and_exchange}0000")


SSN_CONTEXT = re.compile(r"(?:ssn|social\s+security(?:\s+(?:number|no))?|social\s+sec|taxpayer\s+id(?:entification)?)(?!\w)")
SSN_CONTEXT_BEFORE = re.compile(r"\b(?:ssn|social\s+security|social\s+sec|taxpayer\s+id|tin)\b", re.I)
SSN = re.compile(r"\d(?<![\w-]\d)\d{2}([- ])\d{2}\1\d{4}(?![\w-])")
SSN_BARE = re.compile(r"\d(?<![\w-]\d)\d{8}(?![\w-])")


def _ssn_confidence(text: str, match: re.Match) -> float | None:
    if not _ssn_valid(match.group().replace("-", "").replace(" ", "")):
        return None
    return 0.99 if _context_before(text, match.start(), SSN_CONTEXT_BEFORE) else 0.85


CARD = re.compile(r"\d(?<![\d-]\d)(?:[ -]?\d){11,18}(?![\d-])")
CARD_GROUPINGS = ((4, 6, 5), (4, 6, 4))


def _card_confidence(text: str, match: re.Match) -> float | None:
    value = match.group()
    separators = {char for char in value if not char.isdigit()}
    if len(separators) > 1:
        return None
    digits = value.replace(" ", "").replace("-", "")
    if separators:
        groups = tuple(len(group) for group in re.split(r"[ -]", value))
        if groups not in CARD_GROUPINGS and not (all(size == 4 for size in groups[:-1]) and 1 <= groups[-1] <= 4):
            return None
    if not (13 <= len(digits) <= 19 and _card_issuer_known(digits) and _luhn_valid(digits)):
        return None
    return 0.95


IBAN_CANDIDATE = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){10,30}")


class IbanDetector(WindowDetector):
    def __init__(self):
        super().__init__("iban", "iban_mod97", IBAN_CANDIDATE, 0.97, min_digits=2, before=2, after=40,
                         shape=_country_code_before)

    def find(self, scan: ScanText) -> Iterator[Finding]:
        text = scan.text
        for candidate in self.candidates(scan):
            value = candidate.group()
            length = IBAN_LENGTHS.get(value[:2])
            compact = value.replace(" ", "")
            if length is None or len(compact) < length:
                continue
            seen, end = 0, 0
            for end, char in enumerate(value, 1):
                seen += char != " "
                if seen == length:
                    break
            if text[candidate.start() + end:candidate.start() + end + 1].isalnum() or not _iban_valid(compact[:length]):
                continue
            yield Finding(self.category, candidate.start(), candidate.start() + end, 0.97, self.name)


IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")
# Dotted numbers near these words are versions or section numbers ("upgrade from version 1.2.3.4 to 1.2.4.0").
VERSION_CONTEXT = re.compile(r"\b(?:version|ver|release|build|firmware|section|chapter|upgrade|downgrade|v(?=\s*$))\b|§", re.I)


def _ipv4_confidence(text: str, match: re.Match) -> float | None:
    try:
        ipaddress.IPv4Address(match.group())
    except ValueError:
        return None
    return None if VERSION_CONTEXT.search(text, max(0, match.start() - 30), match.start()) else 0.9


def _ipv6_confidence(text: str, match: re.Match) -> float | None:
    value = match.group()
    if value.count(":") < 2 or not any(char.isdigit() for char in value):
        return None
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return 0.85


DOB_CONTEXT = re.compile(r"(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday|birth)(?!\w)|\(b\.")
MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|Oct(?:ober)?|"
          r"Nov(?:ember)?|Dec(?:ember)?)")
NUMERIC_DATE = re.compile(r"(?<![\d/.-])(\d{1,4})([/.-])(\d{1,2})\2(\d{2,4})(?![\d/-]|\.\d)")
WORDED_DATE = re.compile(
    rf"\b(?:{MONTHS}\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})"
    rf"|(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTHS}\.?,?\s+(\d{{4}}))\b",
    re.I,
)


def _dob_confidence(text: str, match: re.Match) -> float | None:
    if match.re is NUMERIC_DATE:
        return 0.9 if _numeric_date_plausible(match.group(1), match.group(3), match.group(4)) else None
    year = int(match.group(2) or match.group(4))
    return 0.9 if 1900 <= year <= datetime.date.today().year else None


MRN_CONTEXT = re.compile(
    r"(?:mrn|medical\s+record(?:\s+(?:number|no|num|#))?|patient\s+(?:id|identifier|number|no|#)|chart\s+(?:number|no|#)|"
    r"record\s+(?:number|no|#))(?!\w)")
MRN_DEFAULT = re.compile(r"(?<![\w-])[A-Z]{0,3}-?\d{5,10}(?![\w-])")
HEALTH_PLAN_CONTEXT = re.compile(
    r"(?:member\s+(?:id|number|no|#)|subscriber\s+(?:id|number|no|#)|health\s+plan\s+(?:id|number|no|#)|"
    r"insurance\s+(?:id|number|no|#)|policy\s+(?:id|number|no|#)|group\s+(?:number|no|#)|medicare(?:\s+(?:number|id))?|"
    r"medicaid(?:\s+(?:number|id))?|mbi|beneficiary\s+(?:id|identifier|number))(?!\w)")
MBI_LETTER = "AC-HJKMNP-RT-Y"
HEALTH_PLAN_DEFAULTS = (
    re.compile(rf"(?<![\w-])[1-9][{MBI_LETTER}][{MBI_LETTER}\d]\d-?[{MBI_LETTER}][{MBI_LETTER}\d]\d-?"
               rf"[{MBI_LETTER}]{{2}}\d{{2}}(?![\w-])"),
    re.compile(r"(?<![\w-])[A-Z]{1,4}-?\d{6,12}(?![\w-])"),
    re.compile(r"(?<![\w-])\d{8,12}(?![\w-])"),
)
NPI_CONTEXT = re.compile(r"(?:npi|national\s+provider\s+(?:identifier|id|number)|provider\s+(?:id|number|no))(?!\w)")
NPI = re.compile(r"(?<![\w-])[12]\d{9}(?![\w-])")

STREET_SUFFIXES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Ter|Circle|Cir|"
    "Parkway|Pkwy|Highway|Hwy|Way|Square|Sq|Trail|Trl|Alley|Plaza|Loop"
)
US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|"
    "OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
POSTAL_ADDRESS = re.compile(
    rf"\d(?<![\w#-]\d)\d{{0,5}}(?:-\d{{1,4}})?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+|\d{{1,3}}(?:st|nd|rd|th))(?:\s+[A-Z][a-z]+){{0,3}}\s+"
    rf"(?:{STREET_SUFFIXES})\b\.?(?:\s+[NSEW]{{1,2}}\b)?"
    rf"(?P<unit>,?\s+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*#?[A-Za-z0-9-]{{1,6}})?"
    rf"(?P<locality>,\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+){{0,2}},\s*(?:{US_STATES})(?:\s+\d{{5}}(?:-\d{{4}})?)?\b)?"
)


def _postal_address_confidence(text: str, match: re.Match) -> float | None:
    return 0.92 if match.group("locality") else 0.75


AWS_SECRET_CONTEXT = re.compile(r"(?:aws_secret_access_key|secret[_\s]access[_\s]key|aws[_\s]secret(?:[_\s]key)?)")
AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s:,.-]{0,16000}?"
    r"(?:-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----|(?=[^A-Za-z0-9+/=\s:,.-])|\Z)"
)
SECRET_PATTERNS: tuple[tuple[str, re.Pattern, tuple[str, ...]], ...] = (
    ("anthropic_api_key", re.compile(r"sk-ant-(?<![\w-]sk-ant-)[A-Za-z0-9_-]{20,}"), ("sk-ant-",)),
    ("openai_api_key", re.compile(r"sk-(?<![\w-]sk-)(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"), ("sk-",)),
    ("aws_access_key_id", re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"), ("AKIA", "ASIA")),
    ("github_token", re.compile(r"g(?<![\w-]g)(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})"),
     ("gh", "github_pat_")),
    ("google_api_key", re.compile(r"AIza(?<![\w-]AIza)[0-9A-Za-z_-]{35}(?![\w-])"), ("AIza",)),
    ("slack_token", re.compile(r"xox(?<![\w-]xox)[abposr]-[A-Za-z0-9-]{10,}"), ("xox",)),
    ("stripe_secret_key", re.compile(r"[sr]k_(?<![\w-][sr]k_)(?:live|test)_[A-Za-z0-9]{16,}"), ("k_live_", "k_test_")),
    ("private_key_block", PEM_PRIVATE_KEY, ("-----BEGIN",)),
)
JWT = re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}")


def _country_code_before(text: str, start: int, end: int) -> bool:
    prefix = text[start - 2:start] if start >= 2 else ""
    return prefix.isalpha() and prefix.isupper()


def _ipv4_shape(text: str, start: int, end: int) -> bool:
    return text.count(".", start, end) >= 3


def _street_number_shape(text: str, start: int, end: int) -> bool:
    return end - start <= 11 and text[end:end + 1].isspace() and text[end + 1:end + 2].isupper()


HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class Ipv6Detector:
    """IPv6 candidates only around colons that sit between hex digits (or in "::")."""

    category = "ip_address"
    name = "ipv6"
    min_digits = 1  # see _ipv6_confidence
    pattern = re.compile(r"[0-9A-Fa-f:](?<![\w:][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}:(?:[0-9A-Fa-f]{0,4}:){0,6}[0-9A-Fa-f]{0,4}(?![\w:])")

    def find(self, scan: ScanText) -> Iterator[Finding]:
        text, windows = scan.text, []
        colon = text.find(":")
        while colon != -1:
            following = text[colon + 1:colon + 2]
            if following == ":" or (following in HEX_DIGITS and text[colon - 1:colon] in HEX_DIGITS):
                low, high = max(0, colon - 40), colon + 42
                if windows and low <= windows[-1][1]:
                    windows[-1][1] = high
                else:
                    windows.append([low, high])
                colon = text.find(":", colon + 2)
            else:
                colon = text.find(":", colon + 1)
        seen: set[tuple[int, int]] = set()
        for low, high in windows:
            for match in self.pattern.finditer(text, low, min(len(text), high)):
                confidence = _ipv6_confidence(text, match)
                if confidence is not None and match.span() not in seen:
                    seen.add(match.span())
                    yield Finding(self.category, match.start(), match.end(), confidence, self.name)


def _builtin_detectors(medical_record_values: tuple, health_plan_values: tuple) -> tuple:
    return (
        EmailDetector(),
        PhoneDetector(),
        WindowDetector("us_ssn", "us_ssn", SSN, _ssn_confidence, min_digits=9),
        ContextDetector("us_ssn", "us_ssn_context", SSN_CONTEXT, (SSN_BARE,),
                        lambda text, match: 0.9 if _ssn_valid(match.group()) else None,
                        needles=("ssn", "social", "taxpayer"), window=20, min_digits=9),
        WindowDetector("payment_card", "luhn", CARD, _card_confidence, min_digits=12),
        IbanDetector(),
        WindowDetector("ip_address", "ipv4", IPV4, _ipv4_confidence, min_digits=4, shape=_ipv4_shape),
        Ipv6Detector(),
        ContextDetector("date_of_birth", "date_of_birth", DOB_CONTEXT, (NUMERIC_DATE, WORDED_DATE), _dob_confidence,
                        needles=("born", "dob", "d.o.b", "birth", "(b."), min_digits=2),
        ContextDetector("medical_record_number", "medical_record_number", MRN_CONTEXT, medical_record_values, 0.9,
                        needles=("mrn", "medical record", "patient", "chart", "record"),
                        min_digits=1 if medical_record_values == (MRN_DEFAULT,) else 0),
        ContextDetector("health_plan_id", "health_plan_id", HEALTH_PLAN_CONTEXT, health_plan_values, 0.9,
                        needles=("member", "subscriber", "health plan", "insurance", "policy", "group", "medica", "mbi",
                                 "beneficiary"), min_digits=1 if health_plan_values == HEALTH_PLAN_DEFAULTS else 0),
        ContextDetector("us_npi", "npi_luhn", NPI_CONTEXT, (NPI,),
                        lambda text, match: 0.97 if _luhn_valid("80840" + match.group()) else None,
                        needles=("npi", "national", "provider"), min_digits=10),
        WindowDetector("postal_address", "us_street_address", POSTAL_ADDRESS, _postal_address_confidence,
                       min_digits=1, before=2, after=120, shape=_street_number_shape),
        *(NeedleDetector("secret", name, pattern, 0.97, needles) for name, pattern, needles in SECRET_PATTERNS),
        ContextDetector("secret", "aws_secret_access_key", AWS_SECRET_CONTEXT, (AWS_SECRET,), 0.95,
                        needles=("aws", "secret"), window=12),
        NeedleDetector("secret", "jwt", JWT, lambda text, match: 0.95 if _jwt_header_valid(match.group()) else None,
                       needles=("eyJ",)),
    )


# --- custom patterns ------------------------------------------------------------------------

SAMPLE_ALPHABET = frozenset(chr(code) for code in range(32, 127)) | {"\n", "\t", "é", "ß", "\u00a0"}
UNBOUNDED = sre_constants.MAXREPEAT
REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT)
CATEGORY_TESTS = {
    sre_constants.CATEGORY_DIGIT: str.isdigit, sre_constants.CATEGORY_NOT_DIGIT: lambda char: not char.isdigit(),
    sre_constants.CATEGORY_SPACE: str.isspace, sre_constants.CATEGORY_NOT_SPACE: lambda char: not char.isspace(),
    sre_constants.CATEGORY_WORD: lambda char: char.isalnum() or char == "_",
    sre_constants.CATEGORY_NOT_WORD: lambda char: not (char.isalnum() or char == "_"),
}
EMPTY = ""  # in a first-character set: the sequence can match the empty string


def _set_members(items) -> frozenset[str]:
    negate, members = False, set()
    for op, argument in items:
        if op is sre_constants.NEGATE:
            negate = True
        elif op is sre_constants.LITERAL:
            members.add(chr(argument))
        elif op is sre_constants.RANGE:
            members.update(char for char in SAMPLE_ALPHABET if argument[0] <= ord(char) <= argument[1])
        elif op is sre_constants.CATEGORY:
            test = CATEGORY_TESTS.get(argument)
            members.update(SAMPLE_ALPHABET if test is None else (char for char in SAMPLE_ALPHABET if test(char)))
        else:
            members.update(SAMPLE_ALPHABET)
    return frozenset(SAMPLE_ALPHABET - members if negate else members)


def _first_chars(items) -> frozenset[str]:
    """Characters the sequence can start with (over a sample alphabet), with EMPTY if it can match nothing."""
    for index, (op, argument) in enumerate(items):
        if op is sre_constants.LITERAL:
            return frozenset({chr(argument)})
        if op is sre_constants.NOT_LITERAL:
            return SAMPLE_ALPHABET - {chr(argument)}
        if op is sre_constants.ANY:
            return SAMPLE_ALPHABET
        if op is sre_constants.IN:
            return _set_members(argument)
        if op is sre_constants.AT or op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            continue
        if op is sre_constants.SUBPATTERN:
            first = _first_chars(argument[3])
        elif op in REPEATS or op is sre_constants.POSSESSIVE_REPEAT:
            first = _first_chars(argument[2]) | ({EMPTY} if argument[0] == 0 else frozenset())
        elif op is sre_constants.BRANCH:
            first = frozenset().union(*(_first_chars(alternative) for alternative in argument[1]))
        elif op is sre_constants.ATOMIC_GROUP:
            first = _first_chars(argument)
        else:
            return SAMPLE_ALPHABET | {EMPTY}
        if EMPTY not in first:
            return first
        return (first - {EMPTY}) | _first_chars(items[index + 1:])
    return frozenset({EMPTY})


def _with_follow(first: frozenset[str], follow: frozenset[str]) -> frozenset[str]:
    return (first - {EMPTY}) | follow if EMPTY in first else first


def _backtracking_risk(items, inside_unbounded: bool, follow: frozenset[str]) -> str | None:
    """`follow`: the characters that can come right after `items` (EMPTY: the end of the pattern)."""
    for index, (op, argument) in enumerate(items):
        after = _with_follow(_first_chars(items[index + 1:]), follow)
        if op in REPEATS:
            low, high, body = argument
            if inside_unbounded and high > 1 and high != low:
                return "nested quantifiers such as (a+)+"
            unbounded = high == UNBOUNDED
            # Inside an unbounded repetition the body's end may be followed by the body again.
            body_follow = after | _first_chars(body) - {EMPTY} if unbounded else after
            reason = _backtracking_risk(body, inside_unbounded or unbounded, body_follow)
        elif op is sre_constants.SUBPATTERN:
            reason = _backtracking_risk(argument[3], inside_unbounded, after)
        elif op is sre_constants.BRANCH:
            if inside_unbounded:
                firsts = [_with_follow(_first_chars(alternative), after) for alternative in argument[1]]
                for position, first in enumerate(firsts):
                    if any((first & other) - {EMPTY} for other in firsts[position + 1:]):
                        return "alternatives that can match the same text inside a repetition, such as (a|a)*"
            reason = next((found for alternative in argument[1]
                           if (found := _backtracking_risk(alternative, inside_unbounded, after))), None)
        else:
            # Atomic groups and possessive quantifiers do not backtrack: the way to write a safe repetition.
            reason = None
        if reason:
            return reason
    return None


def custom_pattern_validate(pattern: str) -> None:
    if not isinstance(pattern, str) or not pattern:
        raise CustomPatternInvalid("The pattern must be a non-empty string.")
    if len(pattern) > CUSTOM_PATTERN_MAX_LENGTH:
        raise CustomPatternInvalid(f"The pattern is longer than {CUSTOM_PATTERN_MAX_LENGTH} characters.")
    # Counted repetitions are expanded when compiling: (?:a{1000}){1000} alone takes seconds.
    counts = math.prod(max(int(low), int(high or 0)) for low, high in REPETITION_COUNT.findall(pattern))
    if counts > CUSTOM_PATTERN_MAX_REPETITIONS:
        raise CustomPatternInvalid(
            f"The pattern's repetition counts ({{n}}, {{n,m}}) multiply to more than {CUSTOM_PATTERN_MAX_REPETITIONS}.")
    try:
        compiled = regex.compile(pattern, regex.V0)
    except (regex.error, OverflowError, RecursionError) as error:
        raise CustomPatternInvalid(f"The pattern does not compile: {error}.") from None
    if compiled.fullmatch(""):
        raise CustomPatternInvalid("The pattern matches the empty string; it must match at least one character.")
    try:
        parsed = sre_parser.parse(pattern)
    except (re.error, OverflowError, RecursionError):
        return  # syntax only the `regex` package knows (\p{..}, fuzzy matching): the scan time limit bounds it
    reason = _backtracking_risk(parsed.data, inside_unbounded=False, follow=frozenset({EMPTY}))
    if reason:
        raise CustomPatternInvalid(
            f"The pattern risks catastrophic backtracking ({reason}); use an atomic group (?>...) or a possessive "
            f"quantifier (++, *+), or remove the ambiguity."
        )


def _compiled_pattern(pattern: str, owner: str) -> regex.Pattern | None:
    try:
        custom_pattern_validate(pattern)
    except CustomPatternInvalid as error:
        # Stored configuration predating a stricter check must not break the proxy: skip it, loudly.
        logger.warning("guardrails: skipping %s pattern %r: %s", owner, pattern, error)
        return None
    return regex.compile(pattern, regex.V0)


class CustomDetector:
    min_digits = 0

    def __init__(self, custom: CustomPattern, compiled: regex.Pattern):
        self.category = CUSTOM_CATEGORY_PREFIX + custom.name
        self.name = self.category
        self.pattern = compiled

    def find(self, scan: ScanText) -> Iterator[Finding]:
        findings = []
        try:
            for match in self.pattern.finditer(scan.text, timeout=CUSTOM_PATTERN_TIMEOUT_SECONDS):
                if match.end() > match.start():
                    findings.append(Finding(self.category, match.start(), match.end(), CUSTOM_PATTERN_CONFIDENCE, self.name))
        except TimeoutError:
            logger.warning("guardrails: custom pattern %s timed out after %s s; findings so far kept",
                           self.category, CUSTOM_PATTERN_TIMEOUT_SECONDS)
        return iter(findings)


# --- optional NLP detector ------------------------------------------------------------------

@functools.cache
def _presidio_analyzer():
    try:
        from presidio_analyzer import AnalyzerEngine
    except ImportError:
        return None
    try:
        return AnalyzerEngine()
    except Exception:  # noqa: BLE001 - a missing spaCy model must not take the proxy down
        logger.warning("guardrails: presidio_analyzer is installed but could not start; person_name is off", exc_info=True)
        return None


def nlp_available() -> bool:
    return _presidio_analyzer() is not None


def _person_names(text: str) -> list[Finding]:
    analyzer = _presidio_analyzer()
    if analyzer is None:
        return []
    return [Finding("person_name", result.start, result.end, round(float(result.score), 4), "presidio")
            for result in analyzer.analyze(text=text, entities=["PERSON"], language="en")]


# --- the detector set -----------------------------------------------------------------------

def _non_overlapping(findings: list[Finding]) -> list[Finding]:
    """Where findings overlap the most confident one wins, then the longest."""
    kept_starts: list[int] = []
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda found: (-found.confidence, found.start - found.end, found.start)):
        index = bisect.bisect_left(kept_starts, finding.start)
        if index > 0 and kept[index - 1].end > finding.start:
            continue
        if index < len(kept) and kept[index].start < finding.end:
            continue
        kept_starts.insert(index, finding.start)
        kept.insert(index, finding)
    return kept


def max_scan_chars() -> int:
    return settings.GATEHOUSE_GUARDRAIL_MAX_SCAN_CHARS


class DetectorSet:
    def __init__(self, detectors: tuple):
        self.detectors = detectors
        self.categories = frozenset(CATEGORIES) | {detector.category for detector in detectors}

    def scan(self, text: str, categories: frozenset[str] | None = None) -> list[Finding]:
        """Non-overlapping findings sorted by start, for the first max_scan_chars() characters of `text`
        only; `categories` names which to look for (None: all). Unknown names are ignored."""
        wanted = self.categories if categories is None else categories
        scan = ScanText.of(text[:max_scan_chars()])
        findings: list[Finding] = []
        for detector in self.detectors:
            if detector.category in wanted and detector.min_digits <= scan.max_digits:
                findings.extend(detector.find(scan))
        if "prompt_injection" in wanted:
            findings.extend(Finding("prompt_injection", start, end, confidence, detector)
                            for start, end, confidence, detector in prompt_injection_scan(
                                scan.text, scan.lowered, [start for start, _, _ in scan.clusters]))
        if "person_name" in wanted:
            findings.extend(_person_names(scan.text))
        return _non_overlapping(findings)


@functools.lru_cache(maxsize=256)
def detector_set_build(*, custom: tuple[CustomPattern, ...] = (), medical_record_patterns: tuple[str, ...] = (),
                       health_plan_patterns: tuple[str, ...] = ()) -> DetectorSet:
    medical_record_values = (MRN_DEFAULT, *filter(None, (_compiled_pattern(pattern, "medical record")
                                                        for pattern in medical_record_patterns)))
    health_plan_values = (*HEALTH_PLAN_DEFAULTS, *filter(None, (_compiled_pattern(pattern, "health plan")
                                                                for pattern in health_plan_patterns)))
    custom_detectors = tuple(
        CustomDetector(pattern, compiled) for pattern in custom
        if (compiled := _compiled_pattern(pattern.pattern, f"custom:{pattern.name}")) is not None
    )
    return DetectorSet(_builtin_detectors(medical_record_values, health_plan_values) + custom_detectors)


# --- redaction ------------------------------------------------------------------------------

# Kept from the first redaction version: request logs already stored hold [CARD_n].
PLACEHOLDER_LABELS = {"payment_card": "CARD"}
NOT_PART_OF_VALUE = re.compile(r"[\s().-]")
NOT_LABEL = re.compile(r"[^A-Z0-9]+")


class Redactor:
    """Typed placeholders ([EMAIL_1], [US_SSN_2], [CUSTOM_ORDER_ID_1]) consistent within one request:
    the same value always gets the same placeholder, across all messages of the request."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._placeholders: dict[tuple[str, str], str] = {}

    def _placeholder(self, category: str, value: str) -> str:
        key = (category, NOT_PART_OF_VALUE.sub("", value) if category not in ("secret", "postal_address") else value)
        placeholder = self._placeholders.get(key)
        if placeholder is None:
            self.counts[category] = self.counts.get(category, 0) + 1
            label = PLACEHOLDER_LABELS.get(category) or NOT_LABEL.sub("_", category.upper())
            placeholder = self._placeholders[key] = f"[{label}_{self.counts[category]}]"
        return placeholder

    def redact(self, text: str, findings: list[Finding]) -> str:
        """`findings` from DetectorSet.scan of this same text (non-overlapping, sorted by start)."""
        parts, position = [], 0
        for finding in findings:
            if finding.start < position:
                continue
            parts.append(text[position:finding.start])
            parts.append(self._placeholder(finding.category, text[finding.start:finding.end]))
            position = finding.end
        parts.append(text[position:])
        return "".join(parts)
