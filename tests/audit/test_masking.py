import datetime
import decimal
import uuid

import pytest

from audit.masking import MASK, key_is_secret, secrets_masked


@pytest.mark.parametrize(
    "key",
    ["password", "new_password", "secret", "client_secret", "secret_hash", "token", "access_token", "refreshToken",
     "api_key", "apiKey", "API-KEY", "openai_api_key", "key_hash", "keyHash", "ciphertext", "totp_secret"],
)
def test_secret_keys_are_recognised(key):
    assert key_is_secret(key)


@pytest.mark.parametrize("key", ["name", "role", "max_output_tokens", "prompt_tokens", "keys", "encryption_key_id",
                                 "team", "hash_algorithm"])
def test_other_keys_are_not(key):
    assert not key_is_secret(key)


def test_masking_reaches_every_depth_and_keeps_the_rest():
    changes = {
        "name": ["a", "b"],
        "api_key": "replaced",
        "config": [None, {"headers": {"Authorization": "x", "x-api-key": "sk-1"}, "nested": [{"password": "p", "n": 1}]}],
        "max_output_tokens": [100, 200],
    }
    assert secrets_masked(changes) == {
        "name": ["a", "b"],
        "api_key": MASK,
        "config": [None, {"headers": {"Authorization": "x", "x-api-key": MASK}, "nested": [{"password": MASK, "n": 1}]}],
        "max_output_tokens": [100, 200],
    }


def test_values_become_plain_json():
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    identifier = uuid.uuid4()
    assert secrets_masked({"a": (decimal.Decimal("1.50"), moment, identifier, float("nan"), {1, 2} and [1], "x\x00")}) == {
        "a": ["1.5", moment.isoformat(), str(identifier), "nan", [1], "x\ufffd"]
    }
