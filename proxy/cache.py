"""Per-process caches of the gateway's hot-path data, invalidated across processes.

Every process keeps what it loaded from PostgreSQL (a key's grant, an org's routes) in
memory, tagged with the generation it was loaded under. The generation is one Redis
counter: every change to a key, secret, credential, deployment or alias bumps it after
commit (`gateway_cache_invalidate`), and each request reads it once, so a revoke or a
rotation takes effect on the next request in every process.
"""
import threading
from collections.abc import Callable, Hashable
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from audit.services import audit_event_record

_client_lock = threading.Lock()
_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                # Blocking: with hundreds of greenlets in flight, a request waits for a free
                # connection rather than failing or opening one per greenlet.
                pool = redis.BlockingConnectionPool.from_url(
                    settings.REDIS_URL, max_connections=settings.GATEHOUSE_REDIS_POOL_MAX, timeout=10,
                    socket_connect_timeout=2, socket_timeout=10, health_check_interval=30,
                )
                _client = redis.Redis(connection_pool=pool)
    return _client


def _generation_key() -> str:
    # Per database, so that a test run or a second installation on the same Redis does not
    # flush this installation's caches.
    return f"gatehouse:{settings.DATABASES['default']['NAME']}:gateway:generation"


def gateway_cache_invalidate() -> None:
    """Call in `transaction.on_commit` after any change the proxy reads."""
    redis_client().incr(_generation_key())


def gateway_change_record(*, org, actor, action: str, target, changes: dict | None = None) -> None:
    """Audits a change of something the proxy caches, in the transaction that makes it, and makes every
    gateway process reload it once that transaction commits."""
    audit_event_record(org_id=org.id, actor=actor, action=action, target=target, changes=changes)
    transaction.on_commit(gateway_cache_invalidate)


def gateway_state_read(extra_keys: list[str]) -> tuple[int, list]:
    """The generation and the values of `extra_keys` (cooldown flags), in one round trip."""
    values = redis_client().mget([_generation_key(), *extra_keys])
    return int(values[0] or 0), values[1:]


class GenerationCache:
    """Values loaded from PostgreSQL, valid while the gateway generation is unchanged.

    Loads are single-flight per key: when a change bumps the generation while hundreds of
    requests are in flight, one of them reloads and the others wait for it, instead of
    each opening a database connection.
    """

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[int, Any]] = {}
        self._loading: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def peek(self, key: Hashable) -> Any:
        """The cached value whatever its generation, or None: a guess to prefetch with."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def get(self, key: Hashable, generation: int, load: Callable[[Hashable], Any]) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == generation:
            return entry[1]
        with self._guard:
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != generation:
                value = load(key)
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                entry = self._entries[key] = (generation, value)
            with self._guard:
                self._loading.pop(key, None)
        return entry[1]
