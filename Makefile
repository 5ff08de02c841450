# Gatehouse: `make run` and `make test` are all a new machine needs (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
WEB_WORKERS ?= 2
WEB_CONNECTIONS ?= 1000
export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: run test install services migrate seed web worker beat check clean

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

seed: migrate
	$(PY) manage.py seed_demo

run: seed
	$(PY) -m ops.run

web: install
	$(VENV)/bin/gunicorn config.wsgi --worker-class gevent --workers $(WEB_WORKERS) \
		--worker-connections $(WEB_CONNECTIONS) --bind 0.0.0.0:$(PORT) --access-logfile - --graceful-timeout 20

worker: install
	$(VENV)/bin/celery -A config worker --loglevel INFO --concurrency 2

beat: install
	mkdir -p .data
	$(VENV)/bin/celery -A config beat --loglevel INFO

check: install
	$(PY) manage.py check --deploy

test: services
	$(PY) -m pytest

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
