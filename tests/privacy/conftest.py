import datetime
import uuid

import pytest
from django.utils import timezone

from requestlogs.writer import request_log_buffer
from tenants.context import org_context


@pytest.fixture(autouse=True)
def flushed_by_the_test_only(settings):
    """These tests flush the request-log buffer themselves, inside their transaction; nothing else writes
    rows meanwhile, so an erasure's second pass (for rows still buffered elsewhere) has nothing to wait for."""
    request_log_buffer.background = False
    settings.GATEHOUSE_DSR_LATE_ROWS_SECONDS = 0
    yield
    request_log_buffer.background = True


def log_row(org, *, end_user: str, text: str | None = "my secret prompt", guardrail: dict | None = None) -> dict:
    return {
        "org_id": org.id, "created_at": timezone.now() - datetime.timedelta(minutes=5),
        "request_id": uuid.uuid4().hex, "team_id": None, "key_id": None, "key_last_four": "abcd", "end_user": end_user,
        "client_ip": "10.0.0.7", "endpoint": "chat", "alias": "gpt", "deployment": "d", "upstream_model": "m",
        "provider_kind": "openai", "status": 200, "error_code": "", "stream": False, "prompt_tokens": 10,
        "completion_tokens": 5, "cost_usd": 0.001, "latency_ms": 12, "ttft_ms": None, "attempts": 1,
        "guardrail": guardrail or {}, "logging_level": "full" if text else "metadata",
        "request_text": text, "response_text": "the answer" if text else None,
    }


def logs_write(org, end_user: str, count: int = 1, **options) -> None:
    for _ in range(count):
        request_log_buffer.append(log_row(org, end_user=end_user, **options))
    request_log_buffer.flush()


def spend_write(org, end_user: str, cost_microusd: int = 1000) -> None:
    from spend.models import SpendEntry

    with org_context(org.id):
        SpendEntry.objects.create(org=org, request_id=uuid.uuid4().hex, end_user=end_user, endpoint="chat",
                                  cost_microusd=cost_microusd, status="settled")
