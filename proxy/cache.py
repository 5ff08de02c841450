"""Per-process caches of the gateway's hot-path data, invalidated across processes.

Every process keeps what it loaded from PostgreSQL (a key's grant, an org's routes) in
memory, tagged with the generation it was loaded under. The generation is one Redis
counter: every change to a key, secret, credential, deployment or alias bumps it after
commit (`gateway_cache_invalidate`), and each request reads it once, so a revoke or a
rotation takes effect on the next request in every process.
"""
import threading

import redis
from django.conf import settings

GENERATION_KEY = "gatehouse:gateway:generation"
_client_lock = threading.Lock()
_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = redis.Redis.from_url(
                    settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30
                )
    return _client


def gateway_cache_invalidate() -> None:
    """Call in `transaction.on_commit` after any change the proxy reads."""
    redis_client().incr(GENERATION_KEY)


def gateway_cache_generation() -> int:
    return int(redis_client().get(GENERATION_KEY) or 0)
