"""Headless Chromium (Debian's, through Playwright) against a live console: gunicorn as `make web` runs
it (the proxy tests' `gateway_start`), on the test database, with short session and lockout limits."""
import os

import pytest

from tests.proxy.conftest import gateway_start

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE_TIMEOUT_SECONDS = 5
LOGIN_FAILURE_LIMIT = 3


@pytest.fixture(scope="session")
def console_url(test_database_url, tmp_path_factory):
    server, url = gateway_start(
        test_database_url, workers=1, log_path=tmp_path_factory.mktemp("console") / "gunicorn.log",
        SESSION_IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT_SECONDS), LOGIN_FAILURE_LIMIT=str(LOGIN_FAILURE_LIMIT),
    )
    try:
        # Browsers keep Secure cookies from http://localhost (a secure context), not from http://127.0.0.1.
        yield url.replace("127.0.0.1", "localhost")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def chromium(console_url):
    """Per module: Playwright's sync API keeps an event loop running on this thread until it stops, and
    Django refuses ORM calls while one runs. Stopping it after the module keeps the rest of the suite
    clean; within the module `page` allows them (the tests' own ORM calls are synchronous)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()


@pytest.fixture
def page(chromium, console_url, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    context = chromium.new_context(base_url=console_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
