"""Org alert settings and signed webhook delivery against a real local HTTP server."""
import hashlib
import hmac
import http.server
import json
import threading

import pytest

from tenants.context import org_context
from tenants.tasks import WebhookRejected, webhook_deliver
from tenants.webhooks import org_webhook_signing_secret

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *parts]) + "/"


class Receiver:
    """A webhook endpoint answering with the status codes it is told to, recording what it got."""

    def __init__(self, statuses=(204,)):
        self.statuses = list(statuses)
        self.received: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver(settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]
    made = []

    def make(statuses=(204,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_alert_settings_are_updated_validated_and_audited(org_a, api_as, receiver):
    org, owner = org_a
    hook = receiver()
    response = api_as(owner).patch(url(org), {
        "time_zone": "Europe/Berlin", "allow_unpriced_models": True, "webhook_url": hook.url, "secret_rotation_days": 30,
    }, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["time_zone"] == "Europe/Berlin" and response.json()["webhook_url"] == hook.url
    org.refresh_from_db()
    assert (org.time_zone, org.allow_unpriced_models, org.secret_rotation_days) == ("Europe/Berlin", True, 30)


@pytest.mark.parametrize("body, field", [
    ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ({"time_zone": ""}, "time_zone"),
    ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
    ({"webhook_url": "http://169.254.169.254/latest"}, "webhook_url"),
    ({"secret_rotation_days": 0}, "secret_rotation_days"),
    ({"allow_unpriced_models": "perhaps"}, "allow_unpriced_models"),
])
def test_alert_settings_bad_input(org_a, api_as, body, field, settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = []
    org, owner = org_a
    response = api_as(owner).patch(url(org), body, format="json")
    assert response.status_code == 400
    assert field in str(response.json())


def test_private_webhook_host_needs_the_allowlist(org_a, api_as, settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = []
    org, owner = org_a
    response = api_as(owner).patch(url(org), {"webhook_url": "http://127.0.0.1:9/hook"}, format="json")
    assert response.status_code == 400 and "GATEHOUSE_UPSTREAM_ALLOWLIST" in str(response.json())


def test_signing_secret_is_for_admins_only_and_differs_per_org(org_a, org_b, api_as, add_member):
    (a, owner_a), (b, owner_b) = org_a, org_b
    secret_a = api_as(owner_a).get(url(a, "webhook-secret")).json()["signing_secret"]
    secret_b = api_as(owner_b).get(url(b, "webhook-secret")).json()["signing_secret"]
    assert secret_a.startswith("whsec_") and secret_a != secret_b
    assert api_as(add_member(a, "member")).get(url(a, "webhook-secret")).status_code == 403
    assert api_as(owner_a).get(url(b, "webhook-secret")).status_code == 404


def test_delivery_is_signed_and_verifiable(org_a, receiver):
    org, _ = org_a
    hook = receiver()
    org.webhook_url = hook.url
    org.save(update_fields=["webhook_url"])
    message = {"id": "d-1", "event": "budget.soft_limit", "org_id": str(org.id), "data": {"budget": "x"}}
    assert webhook_deliver.apply(args=(str(org.id), message)).get() == 204
    headers, body = hook.received[0]
    expected = hmac.new(org_webhook_signing_secret(org.id).encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-gatehouse-signature"] == f"sha256={expected}"
    assert headers["x-gatehouse-event"] == "budget.soft_limit" and json.loads(body)["data"] == {"budget": "x"}


def test_server_errors_are_retried_and_client_errors_are_not(org_a, receiver):
    org, _ = org_a
    failing, refusing = receiver((503,)), receiver((410,))
    org.webhook_url = failing.url
    org.save(update_fields=["webhook_url"])
    with pytest.raises(WebhookRejected):
        webhook_deliver.run(str(org.id), {"id": "d-2", "event": "x", "data": {}})
    org.webhook_url = refusing.url
    org.save(update_fields=["webhook_url"])
    assert webhook_deliver.run(str(org.id), {"id": "d-3", "event": "x", "data": {}}) == 410
    assert len(refusing.received) == 1


def test_a_url_that_now_points_inside_is_not_called(org_a, receiver, settings):
    org, _ = org_a
    hook = receiver()
    org.webhook_url = hook.url
    org.save(update_fields=["webhook_url"])
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = []  # as if the host had re-resolved to a private address since it was saved
    assert webhook_deliver.run(str(org.id), {"id": "d-5", "event": "x", "data": {}}) is None
    assert hook.received == []


def test_no_url_means_no_delivery(org_a):
    org, _ = org_a
    assert webhook_deliver.run(str(org.id), {"id": "d-4", "event": "x", "data": {}}) is None


def test_notify_queues_only_after_commit(org_a, django_capture_on_commit_callbacks):
    from tenants.webhooks import org_webhook_notify

    org, _ = org_a
    with django_capture_on_commit_callbacks() as callbacks:
        with org_context(org.id):
            delivery_id = org_webhook_notify(org_id=org.id, event="x.y", payload={"n": 1})
    assert delivery_id and len(callbacks) == 1
