"""The org context: which tenant the current transaction works for.

Python code reads it from a context variable (so the scoped managers can filter);
PostgreSQL reads `app.current_org`, set with `set_config(..., true)` so that it lives
exactly as long as the transaction and row-level security enforces the same boundary.
"""
import contextlib
import contextvars
import uuid

from django.db import connections, transaction

_current_org_id: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar("current_org_id", default=None)


class MissingOrgContext(RuntimeError):
    """A tenant-owned table was queried outside `org_context`."""


def current_org_id() -> uuid.UUID | None:
    return _current_org_id.get()


def _set_database_setting(name: str, value: str, using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


@contextlib.contextmanager
def org_context(org_id: uuid.UUID | str, *, using: str = "default"):
    """Run the block in a transaction bound to one org, in Python and in PostgreSQL."""
    org_id = uuid.UUID(str(org_id))
    previous = _current_org_id.get()
    nested = connections[using].in_atomic_block
    with transaction.atomic(using=using):
        _set_database_setting("app.current_org", str(org_id), using)
        token = _current_org_id.set(org_id)
        try:
            yield org_id
        finally:
            _current_org_id.reset(token)
        if nested:
            # On error the savepoint rollback undoes set_config; on success the
            # enclosing transaction must get its own org (or none) back.
            _set_database_setting("app.current_org", str(previous or ""), using)


@contextlib.contextmanager
def _lookup_context(setting: str, value: str, using: str):
    with transaction.atomic(using=using):
        _set_database_setting(setting, value, using)
        yield
        _set_database_setting(setting, "", using)


def user_context(user_id: int, *, using: str = "default"):
    """Lets the block read the user's own memberships in every org: the one lookup
    that happens before an org is chosen (policy `org_lookup`, read-only)."""
    return _lookup_context("app.current_user_id", str(user_id), using)


def secret_hash_context(secret_hash: str, *, using: str = "default"):
    """Lets the block read the one credential row whose hash it knows (policy `org_lookup`, read-only)."""
    return _lookup_context("app.secret_hash", secret_hash, using)


def sso_domain_context(domain: str, *, using: str = "default"):
    """Lets the block read the one SSO domain row it names (policy `org_lookup`, read-only): the login
    page's discovery of an org's identity provider by email domain."""
    return _lookup_context("app.sso_domain", domain, using)
