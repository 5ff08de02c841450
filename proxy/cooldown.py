"""Deployments that keep failing are skipped for a while, by every process (state in Redis).

Cooldown only saves time, so when Redis cannot answer these calls the proxy carries on
without it (authentication, which must fail closed, has already read Redis by then).
"""
import redis
from django.conf import settings

from proxy.cache import redis_client

FAILURES_KEY = "gatehouse:deployment:{}:failures"
COOLDOWN_KEY = "gatehouse:deployment:{}:cooldown"


def cooldown_keys(deployment_ids: list[str]) -> list[str]:
    return [COOLDOWN_KEY.format(deployment_id) for deployment_id in deployment_ids]


def cooling_from_flags(deployment_ids: list[str], flags: list) -> set[str]:
    return {deployment_id for deployment_id, flag in zip(deployment_ids, flags) if flag}


def deployments_cooling(deployment_ids: list[str]) -> set[str]:
    if not deployment_ids:
        return set()
    try:
        flags = redis_client().mget(cooldown_keys(deployment_ids))
    except redis.RedisError:
        return set()
    return cooling_from_flags(deployment_ids, flags)


def deployment_failure_record(deployment_id: str) -> bool:
    """Counts a failure in the sliding window; returns True when it put the deployment in cooldown."""
    failures_key = FAILURES_KEY.format(deployment_id)
    try:
        pipe = redis_client().pipeline()
        # The window starts with the first failure (SET NX EX), not with the latest one.
        pipe.set(failures_key, 0, ex=settings.GATEHOUSE_FAILURE_WINDOW_SECONDS, nx=True)
        pipe.incr(failures_key)
        _, failures = pipe.execute()
        if failures < settings.GATEHOUSE_FAILURES_BEFORE_COOLDOWN:
            return False
        pipe = redis_client().pipeline()
        pipe.set(COOLDOWN_KEY.format(deployment_id), 1, ex=settings.GATEHOUSE_COOLDOWN_SECONDS)
        pipe.delete(failures_key)
        pipe.execute()
    except redis.RedisError:
        return False
    return True
