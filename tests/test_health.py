import pytest
from django.db import connections

def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_when_everything_is_up(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgresql": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert list(response.json()["failing"]) == ["redis"]


def test_readyz_names_postgresql_when_it_is_down(client, monkeypatch, django_db_setup, django_db_blocker):
    # A connection to a closed port stands in for a database that went away.
    from config import health

    connections.settings["unreachable"] = dict(connections["default"].settings_dict, PORT="1", HOST="127.0.0.1")
    unreachable = connections.create_connection("unreachable")
    monkeypatch.setattr(health, "connections", {"default": unreachable})
    try:
        with django_db_blocker.unblock():
            response = client.get("/readyz")
    finally:
        unreachable.close_pool()  # else the pool keeps trying to reconnect in the background
        del connections.settings["unreachable"]
    assert response.status_code == 503
    assert list(response.json()["failing"]) == ["postgresql"]
