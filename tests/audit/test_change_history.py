"""django-auditlog's field-level history of tenant models, in audit.ChangeLogEntry: scoped to the org,
row-level secured, joined to the audit event of the same request, and free of secrets."""
import json

import pytest
from django.db import connection

from audit.models import AuditEvent, ChangeLogEntry
from keys import services as key_services
from tenants.checks import org_owned_models, tables_missing_rls
from tenants.context import MissingOrgContext, org_context
from tenants.services import team_create
from tests.conftest import SYSTEM
from tests.keys.test_services import PROVIDER_KEY, catalog_create, local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db
CREATE, UPDATE, DELETE = ChangeLogEntry.Action.CREATE, ChangeLogEntry.Action.UPDATE, ChangeLogEntry.Action.DELETE


def entries(org, model_name: str) -> list[ChangeLogEntry]:
    with org_context(org.id):
        return list(
            ChangeLogEntry.objects.filter(content_type__model=model_name).order_by("timestamp").select_related("content_type")
        )


def test_api_changes_record_field_history_with_the_actor_and_request_id(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    team = client.post("/api/v1/orgs/%s/teams/" % a.slug, {"slug": "search", "name": "Search"}, format="json",
                       HTTP_X_REQUEST_ID="req-create").json()
    client.patch(f"/api/v1/orgs/{a.slug}/teams/{team['id']}/", {"name": "Search 2"}, format="json",
                 HTTP_X_REQUEST_ID="req-update")
    client.delete(f"/api/v1/orgs/{a.slug}/teams/{team['id']}/", HTTP_X_REQUEST_ID="req-delete")
    created, updated, deleted = entries(a, "team")
    assert [created.action, updated.action, deleted.action] == [CREATE, UPDATE, DELETE]
    assert created.org_id == a.id and created.object_pk == team["id"]
    assert created.changes["slug"] == [None, "search"]
    assert updated.changes == {"name": ["Search", "Search 2"]}
    assert (updated.actor_kind, updated.actor_id, updated.actor_label) == ("user", owner.pk, owner.email)
    assert updated.remote_addr == "127.0.0.1"
    assert [created.cid, updated.cid, deleted.cid] == ["req-create", "req-update", "req-delete"]
    with org_context(a.id):
        assert AuditEvent.objects.get(request_id="req-update").action == "team.update"


def test_service_changes_outside_a_request_are_recorded_with_their_org(org_a):
    a, _ = org_a
    with org_context(a.id):
        team_create(org=a, slug="ops", name="Ops", actor=SYSTEM)
    (entry,) = entries(a, "team")
    assert entry.org_id == a.id and entry.actor_kind == "" and entry.actor_id is None


def test_secrets_never_reach_the_change_history(org_a):
    a, _ = org_a
    credential, _, _ = catalog_create(a)
    with org_context(a.id):
        key_services.credential_update(org=a, credential=credential, actor=SYSTEM, api_key="sk-second-TOPSECRET")
        team = team_create(org=a, slug="apps", name="Apps", actor=SYSTEM)
        key, secret = key_services.virtual_key_create(
            org=a, team=team, name="app", allowed_aliases=["*"], expires_at=None, metadata={"api_key": "x"}, actor=SYSTEM
        )
        key_services.virtual_key_rotate(org=a, key=key, grace_seconds=0, actor=SYSTEM)
        history = json.dumps(list(ChangeLogEntry.objects.values("changes", "object_repr", "serialized_data")))
    credential_entries = entries(a, "providercredential")
    assert [entry.action for entry in credential_entries] == [CREATE, UPDATE]
    assert all("ciphertext" not in (entry.changes or {}) for entry in credential_entries)
    assert "updated_at" in credential_entries[1].changes
    for secret_text in (PROVIDER_KEY, "sk-second-TOPSECRET", secret):
        assert secret_text not in history
    key_created = entries(a, "virtualkey")[0].changes
    assert key_created["metadata"] == [None, {"api_key": "***"}] and key_created["name"] == [None, "app"]
    assert "prefix" not in key_created and "last_four" not in key_created
    assert {entry.content_type.model for entry in entries(a, "deployment") + entries(a, "modelalias")} == {
        "deployment", "modelalias"
    }


def test_change_history_is_isolated_per_org(org_a, org_b):
    (a, _), (b, _) = org_a, org_b
    with org_context(a.id):
        team_create(org=a, slug="alpha", name="Alpha", actor=SYSTEM)
    with org_context(b.id):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM audit_changelogentry WHERE org_id = %s", [a.id])
            assert cursor.fetchone()[0] == 0
    with pytest.raises(MissingOrgContext):
        list(ChangeLogEntry.objects.all())


def test_every_audit_table_has_row_level_security():
    audit_models = {model.__name__ for model in org_owned_models() if model._meta.app_label == "audit"}
    assert audit_models == {"AuditEvent", "AuditVerification", "ChangeLogEntry"}
    with connection.cursor() as cursor:
        assert tables_missing_rls(cursor) == []
