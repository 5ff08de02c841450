"""Revocation and rotation take effect on the next request, in every gateway process."""
import time

import pytest
import requests

from keys.services import virtual_key_revoke, virtual_key_rotate
from keys.models import VirtualKey
from tenants.context import org_context
from tests.conftest import SYSTEM

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
# The gateway runs two worker processes; enough requests reach both.
REQUESTS_PER_CHECK = 8


def statuses(gateway_url, secret) -> set[int]:
    return {
        requests.post(f"{gateway_url}/v1/chat/completions", json=BODY, timeout=30,
                      headers={"Authorization": f"Bearer {secret}"}).status_code
        for _ in range(REQUESTS_PER_CHECK)
    }


def test_revoke_is_effective_on_the_next_request_everywhere(gateway_url, wired, committed):
    assert statuses(gateway_url, wired.key) == {200}  # warms both processes' caches
    with org_context(wired.org.id):
        virtual_key_revoke(org=wired.org, key=VirtualKey.objects.get(id=wired.key_id), actor=SYSTEM)
    assert statuses(gateway_url, wired.key) == {401}


def test_rotation_keeps_the_old_secret_for_the_grace_period(gateway_url, wired, committed):
    assert statuses(gateway_url, wired.key) == {200}
    with org_context(wired.org.id):
        _, new_secret = virtual_key_rotate(org=wired.org, key=VirtualKey.objects.get(id=wired.key_id), grace_seconds=2, actor=SYSTEM)
    assert statuses(gateway_url, new_secret) == {200}
    assert statuses(gateway_url, wired.key) == {200}
    time.sleep(2.2)
    assert statuses(gateway_url, wired.key) == {401}
    assert statuses(gateway_url, new_secret) == {200}


def test_rotation_without_grace_stops_the_old_secret_at_once(gateway_url, wired, committed):
    with org_context(wired.org.id):
        _, new_secret = virtual_key_rotate(org=wired.org, key=VirtualKey.objects.get(id=wired.key_id), grace_seconds=0, actor=SYSTEM)
    assert statuses(gateway_url, wired.key) == {401}
    assert statuses(gateway_url, new_secret) == {200}


@pytest.mark.parametrize("authorization, status", [("Bearer scrape-token", 200), ("Bearer wrong", 403), (None, 403)])
def test_metrics_are_for_scrapers_only(gateway_url, wired, authorization, status):
    statuses(gateway_url, wired.key)
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(f"{gateway_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == status
    if status == 200:
        assert f'gatehouse_requests_total{{alias="gpt",deployment="openai-ok",org="{wired.org.slug}",status="200"}}' in response.text
        assert "gatehouse_request_seconds_bucket" in response.text and "gatehouse_cost_usd_total" in response.text


def test_a_virtual_key_cannot_scrape_metrics(gateway_url, wired):
    response = requests.get(f"{gateway_url}/metrics", headers={"Authorization": f"Bearer {wired.key}"}, timeout=10)
    assert response.status_code == 403
