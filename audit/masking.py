"""Secrets never reach an audit record: values under a secret-sounding key are replaced, at any depth,
and everything else is made into plain JSON that PostgreSQL's jsonb stores as given."""
import datetime
import decimal
import math
import re
import uuid

from django.db import models

MASK = "***"
# Any key naming a secret, in any case or spelling (camelCase, kebab-case). "tokens" (plural) is a count
# of LLM tokens (max_output_tokens, prompt_tokens), not a credential, so it stays visible.
SECRET_KEY_PATTERN = re.compile(r"password|passwd|secret|api_?key|key_?hash|ciphertext|token(?!s)")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def key_is_secret(key) -> bool:
    normalized = _CAMEL_BOUNDARY.sub("_", str(key)).lower().replace("-", "_")
    return SECRET_KEY_PATTERN.search(normalized) is not None


def _plain(value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        # jsonb cannot store NUL characters.
        return str.__str__(value).replace("\x00", "\ufffd")
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | models.Model):
        return str(value)
    return _plain(str(value))


def secrets_masked(value):
    """A JSON-ready copy of `value` in which the value of every secret-sounding key is `MASK`."""
    if isinstance(value, dict):
        return {str(key): MASK if key_is_secret(key) else secrets_masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [secrets_masked(item) for item in value]
    return _plain(value)
