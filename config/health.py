import redis
from django.conf import settings
from django.db import DatabaseError, connections
from django.http import JsonResponse

from jobs.selectors import beat_staleness_problem


def healthz(request):
    return JsonResponse({"status": "ok"})


def _postgres_problem() -> str | None:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return None


def _redis_problem() -> str | None:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return str(exc) or exc.__class__.__name__
    return None


def readyz(request):
    checks = {"postgresql": _postgres_problem(), "redis": _redis_problem()}
    if checks["postgresql"] is None:
        watched, problem = beat_staleness_problem()
        if watched:
            checks["beat"] = problem
    failing = {name: problem for name, problem in checks.items() if problem}
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    return JsonResponse({"status": "ok", "checks": {name: "ok" for name in checks}})
