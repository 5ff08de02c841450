"""Security headers, cookies, no inline scripts, and `check --deploy` under production settings."""
import os
import pathlib
import re
import secrets
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from tests.conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db
BASE_DIR = pathlib.Path(django_settings.BASE_DIR)


def assert_security_headers(response):
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/login/", "/api/v1/orgs/", "/v1/models", "/no-such-page/", "/healthz",
                                  "/static/console/console.css"])
def test_every_console_api_and_gateway_response_has_security_headers(client, path):
    assert_security_headers(client.get(path))


def test_hsts_on_https(client):
    response = client.get("/login/", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert_security_headers(client.get("/v1/models", secure=True))
    assert "Strict-Transport-Security" in client.get("/v1/models", secure=True)


def test_session_and_csrf_cookies_are_secure_httponly_and_same_site(client, owner_with_password):
    page = client.get("/login/")
    csrf = page.cookies[django_settings.CSRF_COOKIE_NAME]
    assert csrf["secure"] and csrf["httponly"] and csrf["samesite"] == "Lax"
    _, owner = owner_with_password
    client.post("/login/", {"username": owner.email, "password": TEST_PASSWORD})
    session = client.cookies[django_settings.SESSION_COOKIE_NAME]
    assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"


def test_no_template_has_an_inline_script_or_event_handler():
    for template in (BASE_DIR / "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
        assert not re.search(r"\son[a-z]+\s*=", text), template


def test_api_docs_load_their_script_from_a_file(client, api_as, org_a):
    _, owner = org_a
    page = api_as(owner).get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'<script src="[^"]*\?script=', html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_check_deploy_is_clean_with_production_settings(test_database_url):
    env = {
        **os.environ, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "gatehouse.example.com",
        "SECURE_SSL_REDIRECT": "1", "SECURE_COOKIES": "1", "DATABASE_URL": test_database_url,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
