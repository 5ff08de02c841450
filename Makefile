# Gatehouse: `make run` and `make test` are all a new machine needs (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
MOCK_PROVIDER_PORT ?= 8001
WEB_WORKERS ?= 2
WEB_CONNECTIONS ?= 2000
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: run test test-tools install services migrate seed web worker beat mock-provider check bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

services: install
	$(PY) -m ops.services ensure

migrate: services
	$(PY) manage.py migrate --database owner --noinput

# The demo org talks to the local mock provider, so the quick start needs no provider account.
seed: migrate
	GATEHOUSE_UPSTREAM_ALLOWLIST=$${GATEHOUSE_UPSTREAM_ALLOWLIST:-127.0.0.1/32} \
	GATEHOUSE_DEMO_PROVIDER_KEY=$${GATEHOUSE_DEMO_PROVIDER_KEY:-demo-provider-key} \
		$(PY) manage.py apply_config examples/demo.yaml
	$(PY) manage.py seed_demo

run: seed
	GATEHOUSE_UPSTREAM_ALLOWLIST=$${GATEHOUSE_UPSTREAM_ALLOWLIST:-127.0.0.1/32} $(PY) -m ops.run

web: install
	rm -rf .data/prometheus && mkdir -p .data/prometheus
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/.data/prometheus $(VENV)/bin/gunicorn config.wsgi \
		--worker-class gevent --workers $(WEB_WORKERS) --worker-connections $(WEB_CONNECTIONS) \
		--bind 0.0.0.0:$(PORT) --graceful-timeout 20 --keep-alive 75 $(GUNICORN_ARGS)

worker: install
	$(VENV)/bin/celery -A config worker --loglevel INFO --concurrency 2

beat: install
	mkdir -p .data
	$(VENV)/bin/celery -A config beat --loglevel INFO

mock-provider: install
	$(PY) -m tests.mock_provider.server --host 127.0.0.1 --port $(MOCK_PROVIDER_PORT)

check: install
	$(PY) manage.py check --deploy

# What the browser and SSO tests need beyond Python: Debian's Chromium (Playwright drives it, and never
# downloads a browser of its own) and the npm packages of the test OpenID provider in tests/oidc.
test-tools:
	@if [ ! -x /usr/bin/chromium ]; then \
		if ! command -v apt-get >/dev/null; then \
			echo "Missing /usr/bin/chromium (the browser tests' Chromium) and apt-get is not available:"; \
			echo "install Chromium at /usr/bin/chromium with this system's package manager."; exit 1; \
		fi; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium; \
	fi
	@if [ ! -d tests/oidc/node_modules ]; then \
		command -v npm >/dev/null || { echo "Missing npm (Node.js), needed by the SSO tests' OpenID provider."; exit 1; }; \
		cd tests/oidc && npm ci --no-audit --no-fund; \
	fi

test: services test-tools
	$(PY) -m pytest

bench: services
	$(PY) -m bench.proxy_bench

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
