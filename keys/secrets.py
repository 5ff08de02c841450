"""Generating and hashing bearer secrets (admin tokens now, virtual keys later).

Secrets are stored only as HMAC-SHA256 under a server-side pepper that never enters
the database, so a stolen table cannot be brute-forced offline.
"""
import hashlib
import hmac
import secrets

from django.conf import settings


def secret_generate(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(32)}"


def secret_hash(secret: str) -> str:
    pepper = settings.GATEHOUSE_SECRET_PEPPER.encode()
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)
