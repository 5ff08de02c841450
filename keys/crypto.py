"""Encryption at rest for provider credentials: AES-256-GCM under a key ring.

GATEHOUSE_ENCRYPTION_KEYS = "kid2:<base64 32 bytes>,kid1:<base64 32 bytes>"; the first
entry encrypts, every entry decrypts, so a key can be rotated: add the new one first,
run `manage.py secrets_reencrypt`, then drop the old one. Each ciphertext is bound to
its row (associated data), so it cannot be copied onto another credential or org.
"""
import base64
import functools
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12


class DecryptionFailed(Exception):
    """The ciphertext was tampered with, belongs to another row, or its key is gone from the ring."""


@functools.lru_cache(maxsize=4)
def _key_ring(raw: str) -> tuple[tuple[str, bytes], ...]:
    ring = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        key_id, sep, encoded = entry.partition(":")
        if not sep or not key_id:
            raise ImproperlyConfigured("GATEHOUSE_ENCRYPTION_KEYS entries look like 'kid:base64key'.")
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if len(key) != 32:
            raise ImproperlyConfigured(f"Encryption key {key_id!r} must be 32 bytes (AES-256).")
        ring.append((key_id, key))
    if not ring:
        raise ImproperlyConfigured("GATEHOUSE_ENCRYPTION_KEYS is empty: provider credentials cannot be stored.")
    return tuple(ring)


def key_ring() -> tuple[tuple[str, bytes], ...]:
    return _key_ring(settings.GATEHOUSE_ENCRYPTION_KEYS)


def current_key_id() -> str:
    return key_ring()[0][0]


def encryption_key_generate() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def secret_encrypt(plaintext: str, *, associated_data: bytes) -> tuple[str, str]:
    """Returns (key id, ciphertext as base64 of nonce || AES-GCM output)."""
    key_id, key = key_ring()[0]
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), associated_data)
    return key_id, base64.b64encode(nonce + sealed).decode()


def secret_decrypt(ciphertext: str, *, key_id: str, associated_data: bytes) -> str:
    key = dict(key_ring()).get(key_id)
    if key is None:
        raise DecryptionFailed(f"encryption key {key_id!r} is not in GATEHOUSE_ENCRYPTION_KEYS")
    raw = base64.b64decode(ciphertext)
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data).decode()
    except Exception as exc:  # cryptography raises InvalidTag; never echo secret material
        raise DecryptionFailed("ciphertext does not authenticate") from exc
