"""Request logs written by the live gateway: one row per request, at the right logging level,
off the hot path, and none lost on a graceful stop."""
import http.server
import signal
import threading
import time

import pytest
import requests

from keys.services import virtual_key_create
from requestlogs.models import RequestDailyUsage, RequestLog
from tenants.context import org_context
from tenants.services import org_update, team_update
from tests.conftest import SYSTEM
from tests.proxy.conftest import gateway_start

EMAIL_PROMPT = [{"role": "user", "content": "Mail jane.doe@example.com about card 4111 1111 1111 1111"}]


def chat(gateway_url, key, *, model="gpt", messages=EMAIL_PROMPT, stream=False, headers=None):
    return requests.post(
        f"{gateway_url}/v1/chat/completions", timeout=30, stream=False,
        json={"model": model, "messages": messages, "stream": stream, "user": "end-user-7"},
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )


def logs_for(org, request_id: str, timeout: float = 10) -> RequestLog:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with org_context(org.id):
            row = RequestLog.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no request log for {request_id}")


def set_org_level(org, level: str) -> None:
    with org_context(org.id):
        org_update(org=org, actor=SYSTEM, acting_role="owner", logging_level=level)


def test_metadata_level_logs_everything_but_text(gateway_url, wired):
    response = chat(gateway_url, wired.key)
    assert response.status_code == 200
    row = logs_for(wired.org, response.headers["x-request-id"])
    assert (row.status, row.alias, row.deployment, row.provider_kind, row.endpoint) == (200, "gpt", "openai-ok", "openai", "chat")
    assert row.key_id == wired.key_id and row.key_last_four == wired.key[-4:] and row.team_id == wired.team.id
    assert row.end_user == "end-user-7" and row.client_ip == "127.0.0.1"
    assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.cost_usd > 0 and row.attempts == 1
    assert row.logging_level == "metadata" and row.request_text is None and row.response_text is None
    assert wired.key not in str(row.__dict__)


def test_redacted_level_redacts_before_the_write(gateway_url, wired, committed):
    set_org_level(wired.org, "redacted")
    response = chat(gateway_url, wired.key)
    row = logs_for(wired.org, response.headers["x-request-id"])
    assert row.logging_level == "redacted"
    assert "jane.doe@example.com" not in row.request_text and "[EMAIL_1]" in row.request_text
    assert "4111" not in row.request_text and "[CARD_1]" in row.request_text
    assert "[EMAIL_1]" in row.response_text or "jane" not in row.response_text


def test_full_level_keeps_text_including_streamed_answers(gateway_url, wired, committed):
    set_org_level(wired.org, "full")
    response = chat(gateway_url, wired.key, stream=True)
    assert response.status_code == 200
    row = logs_for(wired.org, response.headers["x-request-id"])
    assert "jane.doe@example.com" in row.request_text
    assert row.response_text.startswith("Hello from mock mock-gpt!")
    assert row.stream and row.ttft_ms is not None and row.completion_tokens > 0


def test_team_key_and_header_may_lower_but_never_raise(gateway_url, wired, committed):
    set_org_level(wired.org, "redacted")
    raised = chat(gateway_url, wired.key, headers={"x-gatehouse-log-level": "full"})
    assert logs_for(wired.org, raised.headers["x-request-id"]).logging_level == "redacted"
    lowered = chat(gateway_url, wired.key, headers={"x-gatehouse-log-level": "metadata"})
    assert logs_for(wired.org, lowered.headers["x-request-id"]).request_text is None
    with org_context(wired.org.id):
        _, quiet_key = virtual_key_create(org=wired.org, team=wired.team, name="quiet", allowed_aliases=["*"],
                                          expires_at=None, metadata={}, actor=SYSTEM, logging_level="metadata")
    assert logs_for(wired.org, chat(gateway_url, quiet_key).headers["x-request-id"]).logging_level == "metadata"
    set_org_level(wired.org, "full")
    with org_context(wired.org.id):
        team_update(org=wired.org, team=wired.team, actor=SYSTEM, logging_level="redacted")
    assert logs_for(wired.org, chat(gateway_url, wired.key).headers["x-request-id"]).logging_level == "redacted"


def test_bad_log_level_header_is_400(gateway_url, wired):
    response = chat(gateway_url, wired.key, headers={"x-gatehouse-log-level": "everything"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-gatehouse-log-level"


def test_errors_after_authentication_are_logged_and_before_it_are_not(gateway_url, wired):
    missing = chat(gateway_url, wired.key, model="no-such-model")
    row = logs_for(wired.org, missing.headers["x-request-id"])
    assert (row.status, row.error_code, row.deployment) == (404, "model_not_found", "")
    failing = chat(gateway_url, wired.key, model="only-500")
    row = logs_for(wired.org, failing.headers["x-request-id"])
    assert row.status == 502 and row.error_code == "upstream_error"
    anonymous = chat(gateway_url, "sk-gh-invalid")
    time.sleep(1)
    with org_context(wired.org.id):
        assert not RequestLog.objects.filter(request_id=anonymous.headers["x-request-id"]).exists()


def test_daily_usage_aggregates_requests(gateway_url, wired):
    request_ids = [chat(gateway_url, wired.key).headers["x-request-id"] for _ in range(4)]
    for request_id in request_ids:  # the two gateway workers flush independently
        logs_for(wired.org, request_id)
    with org_context(wired.org.id):
        usage = RequestDailyUsage.objects.filter(org=wired.org, alias="gpt", key_id=wired.key_id)
        assert sum(u.requests for u in usage) == 4 and len(usage) <= 2  # one row per day (a run across midnight: two)
        assert all(u.errors == 0 and u.prompt_tokens > 0 and u.cost_usd > 0 for u in usage)


def test_no_row_is_lost_on_a_graceful_stop(test_database_url, wired, committed):
    """A second gateway is stopped (SIGTERM) right after answering; its buffered rows must all land."""
    server, url = gateway_start(test_database_url, workers=1)
    request_ids = [chat(url, wired.key, messages=[{"role": "user", "content": "hi"}]).headers["x-request-id"]
                   for _ in range(25)]
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    with org_context(wired.org.id):
        assert RequestLog.objects.filter(request_id__in=request_ids).count() == 25


def test_an_opentelemetry_span_per_request_when_configured(test_database_url, wired):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["content-length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    server, url = gateway_start(test_database_url, workers=1,
                                GATEHOUSE_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}")
    try:
        request_id = chat(url, wired.key).headers["x-request-id"]
        deadline = time.monotonic() + 10
        spans = []
        while not spans and time.monotonic() < deadline:
            time.sleep(0.2)
            for body in received:
                export = ExportTraceServiceRequest.FromString(body)
                spans += [span for rs in export.resource_spans for ss in rs.scope_spans for span in ss.spans]
    finally:
        server.terminate()
        server.wait(timeout=30)
        collector.shutdown()
    attributes = {a.key: a.value for a in spans[0].attributes}
    assert attributes["gatehouse.request_id"].string_value == request_id
    assert attributes["gen_ai.request.model"].string_value == "gpt"
    assert attributes["gen_ai.usage.output_tokens"].int_value > 0
    assert wired.key not in str(spans[0]) and "jane.doe" not in str(spans[0])


@pytest.mark.parametrize("role, status", [("admin", 200), ("member", 403), ("viewer", 403)])
def test_request_log_api_roles(gateway_url, wired, add_member, api_as, role, status, committed):
    response = chat(gateway_url, wired.key)
    logs_for(wired.org, response.headers["x-request-id"])
    user = add_member(wired.org, role)
    listed = api_as(user).get(f"/api/v1/orgs/{wired.org.slug}/request-logs/")
    assert listed.status_code == status
    if status == 200:
        assert response.headers["x-request-id"] in [r["request_id"] for r in listed.json()["results"]]
