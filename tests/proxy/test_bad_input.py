"""Every bad input to /v1/ gets a clear error in the client's format, never a 500."""
import datetime
import time

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from accounts.services import admin_token_create
from keys.services import virtual_key_create
from tenants.context import org_context
from tenants.models import Role
from tests.conftest import SYSTEM

USER = [{"role": "user", "content": "hi"}]


def post(gateway_url, path, *, key=None, json=None, data=None, headers=None):
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.post(f"{gateway_url}{path}", json=json, data=data, headers=headers, timeout=30)


def openai_error(response) -> dict:
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


@pytest.mark.parametrize("key", [None, "sk-gh-nope", "gha_admin-token-lookalike", "x" * 500])
def test_missing_or_invalid_key_is_401(gateway_url, wired, key):
    response = post(gateway_url, "/v1/chat/completions", key=key, json={"model": "gpt", "messages": USER})
    assert response.status_code == 401
    assert openai_error(response)["type"] == "authentication_error"


def test_admin_tokens_and_the_master_key_never_work_on_v1(gateway_url, wired, committed):
    org = wired.org
    with org_context(org.id):
        from tenants.models import Membership

        owner = Membership.objects.get(org=org).user
        _, admin_secret = admin_token_create(org=org, user=owner, name="t", role=Role.OWNER, acting_role=Role.OWNER,
                                             expires_at=None, actor=SYSTEM)
    for secret in (admin_secret, settings.GATEHOUSE_MASTER_KEY):
        response = post(gateway_url, "/v1/chat/completions", key=secret, json={"model": "gpt", "messages": USER})
        assert response.status_code == 401, secret[:4]


def test_x_api_key_header_is_accepted(gateway_url, wired):
    response = post(gateway_url, "/v1/chat/completions", json={"model": "gpt", "messages": USER}, headers={"x-api-key": wired.key})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": USER}, "model"),
        ({"model": 42, "messages": USER}, "model"),
        ({"model": "gpt"}, "messages"),
        ({"model": "gpt", "messages": []}, "messages"),
        ({"model": "gpt", "messages": "hello"}, "messages"),
        ({"model": "gpt", "messages": ["hello"]}, "messages[0]"),
        ({"model": "gpt", "messages": USER, "n": 0}, "n"),
        ({"model": "gpt", "messages": USER, "n": "2"}, "n"),
        ({"model": "gpt", "messages": USER, "max_tokens": -1}, "max_tokens"),
        ({"model": "gpt", "messages": USER, "max_tokens": 10**9}, "max_tokens"),
        ({"model": "gpt", "messages": USER, "max_tokens": True}, "max_tokens"),
        ({"model": "gpt", "messages": USER, "temperature": 9}, "temperature"),
        ({"model": "gpt", "messages": USER, "stream": "yes"}, "stream"),
        ({"model": "gpt", "messages": USER, "tools": {"a": 1}}, "tools"),
    ],
)
def test_chat_field_errors(gateway_url, wired, body, param):
    response = post(gateway_url, "/v1/chat/completions", key=wired.key, json=body)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_body_that_is_not_a_json_object_is_400(gateway_url, wired, data):
    response = post(gateway_url, "/v1/chat/completions", key=wired.key, data=data, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in openai_error(response)["message"]


def test_oversized_body_is_413(gateway_url, wired):
    huge = {"model": "gpt", "messages": [{"role": "user", "content": "x" * (300 * 1024)}]}
    response = post(gateway_url, "/v1/chat/completions", key=wired.key, json=huge)
    assert response.status_code == 413 and openai_error(response)["code"] == "request_too_large"


def test_unknown_model_is_404_and_a_forbidden_one_403(gateway_url, wired):
    response = post(gateway_url, "/v1/chat/completions", key=wired.key, json={"model": "nope", "messages": USER})
    assert response.status_code == 404 and openai_error(response)["code"] == "model_not_found"
    response = post(gateway_url, "/v1/chat/completions", key=wired.narrow_key, json={"model": "claude", "messages": USER})
    assert response.status_code == 403 and openai_error(response)["code"] == "model_not_allowed"


def test_untranslatable_request_is_a_clear_400(gateway_url, wired):
    response = post(gateway_url, "/v1/chat/completions", key=wired.key, json={"model": "claude", "messages": USER, "n": 3})
    assert response.status_code == 400
    assert openai_error(response)["code"] == "untranslatable_request" and openai_error(response)["param"] == "n"


def test_wrong_method_is_405(gateway_url, wired):
    response = requests.get(f"{gateway_url}/v1/chat/completions", headers={"Authorization": f"Bearer {wired.key}"}, timeout=10)
    assert response.status_code == 405 and openai_error(response)["code"] == "method_not_allowed"


def test_anthropic_endpoint_answers_in_anthropic_shape(gateway_url, wired):
    response = post(gateway_url, "/v1/messages", key=wired.key, json={"model": "claude", "messages": USER})
    assert response.status_code == 400
    assert response.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "'max_tokens' is required."}}
    response = post(gateway_url, "/v1/messages", json={"model": "claude", "max_tokens": 5, "messages": USER})
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    response = post(gateway_url, "/v1/messages", key=wired.key, json={"model": "claude", "max_tokens": 5, "messages": USER, "top_k": 1})
    assert response.status_code == 200  # same provider family: passed through untouched
    response = post(gateway_url, "/v1/messages", key=wired.key, json={"model": "gpt", "max_tokens": 5, "messages": USER, "top_k": 1})
    assert response.status_code == 400 and "top_k" in response.json()["error"]["message"]


def test_embeddings_bad_input(gateway_url, wired):
    for body in ({"model": "gpt"}, {"model": "gpt", "input": ""}, {"model": "gpt", "input": []},
                 {"model": "gpt", "input": [1, "a"]}, {"model": "gpt", "input": "x", "encoding_format": "hex"}):
        response = post(gateway_url, "/v1/embeddings", key=wired.key, json=body)
        assert response.status_code == 400, body


def test_request_id_is_echoed_when_well_formed(gateway_url, wired):
    ok = post(gateway_url, "/v1/chat/completions", key=wired.key, json={"model": "gpt", "messages": USER},
              headers={"x-request-id": "trace-123.abc"})
    assert ok.headers["x-request-id"] == "trace-123.abc"
    forged = post(gateway_url, "/v1/chat/completions", key=wired.key, json={"model": "gpt", "messages": USER},
                  headers={"x-request-id": "bad id\twith spaces"})
    assert forged.headers["x-request-id"] != "bad id\twith spaces" and len(forged.headers["x-request-id"]) == 32


def test_expired_key_is_401(gateway_url, wired, committed):
    with org_context(wired.org.id):
        key, secret = virtual_key_create(
            org=wired.org, team=wired.team, name="short", allowed_aliases=["gpt"],
            expires_at=timezone.now() + datetime.timedelta(seconds=1), metadata={}, actor=SYSTEM)
    assert post(gateway_url, "/v1/chat/completions", key=secret, json={"model": "gpt", "messages": USER}).status_code == 200
    time.sleep(1.2)
    response = post(gateway_url, "/v1/chat/completions", key=secret, json={"model": "gpt", "messages": USER})
    assert response.status_code == 401 and openai_error(response)["code"] == "expired_api_key"




def test_unknown_v1_endpoint_is_a_json_404_with_headers(gateway_url, wired):
    response = post(gateway_url, "/v1/completions", key=wired.key, json={"model": "gpt", "prompt": "x"})
    assert response.status_code == 404 and openai_error(response)["code"] == "unknown_endpoint"
    assert response.headers["x-content-type-options"] == "nosniff" and response.headers["x-request-id"]
