"""Scheduled virtual-key rotation, the one-time reveal of the new secret, re-encryption and the rotation report."""
import datetime
import uuid

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from keys import services
from keys.crypto import encryption_key_generate
from keys.models import ProviderCredential, VirtualKey, VirtualKeySecret
from keys.secrets import secret_hash
from keys.tasks import secrets_reencrypt_for_org, virtual_keys_rotate_due_for_org
from tenants.context import org_context
from tenants.services import team_create
from tests.conftest import SYSTEM
from tests.keys.test_services import catalog_create, local_upstreams  # noqa: F401

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *map(str, parts)]) + "/"


@pytest.fixture
def team(org_a):
    a, _ = org_a
    with org_context(a.id):
        return team_create(org=a, slug="search", name="Search", actor=SYSTEM)


def key_with_schedule(org, team, rotation_days=30):
    with org_context(org.id):
        return services.virtual_key_create(org=org, team=team, name="app", allowed_aliases=["*"], expires_at=None,
                                           metadata={}, actor=SYSTEM, rotation_days=rotation_days)


def make_due(org, key) -> None:
    with org_context(org.id):
        VirtualKey.objects.filter(id=key.id).update(next_rotation_at=timezone.now() - datetime.timedelta(minutes=1))


def secrets_of(org, key) -> list[VirtualKeySecret]:
    with org_context(org.id):
        return list(VirtualKeySecret.objects.filter(key=key).order_by("created_at"))


def test_a_key_created_with_a_schedule_gets_its_next_rotation(org_a, team, api_as):
    a, owner = org_a
    response = api_as(owner).post(url(a, "keys"), {"name": "app", "team_id": str(team.id), "allowed_aliases": ["*"],
                                                   "rotation_days": 7}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["rotation_days"] == 7
    next_rotation = datetime.datetime.fromisoformat(body["next_rotation_at"])
    assert abs(next_rotation - (timezone.now() + datetime.timedelta(days=7))) < datetime.timedelta(minutes=1)


def test_the_schedule_is_set_changed_and_cleared_with_patch(org_a, team, api_as):
    a, owner = org_a
    key, _ = key_with_schedule(a, team, rotation_days=None)
    client = api_as(owner)
    body = client.patch(url(a, "keys", key.id), {"rotation_days": 14}, format="json").json()
    assert body["rotation_days"] == 14 and body["next_rotation_at"] is not None
    body = client.patch(url(a, "keys", key.id), {"rotation_days": None}, format="json").json()
    assert body["rotation_days"] is None and body["next_rotation_at"] is None
    with org_context(a.id):
        changes = [e.changes for e in AuditEvent.objects.filter(action="virtual_key.update", target_id=str(key.id))]
    assert {"rotation_days": [None, 14]} in changes and {"rotation_days": [14, None]} in changes


@pytest.mark.parametrize("value", [0, -1, 3651, "monthly", 1.5, True])
def test_bad_schedules_are_refused(org_a, team, api_as, value):
    a, owner = org_a
    key, _ = key_with_schedule(a, team, rotation_days=5)
    response = api_as(owner).patch(url(a, "keys", key.id), {"rotation_days": value}, format="json")
    assert response.status_code == 400 and "rotation_days" in response.json()
    with org_context(a.id):
        assert VirtualKey.objects.get(id=key.id).rotation_days == 5


def test_patch_refuses_unknown_fields_and_another_orgs_key(org_a, org_b, team, api_as):
    (a, owner), (b, _) = org_a, org_b
    key, _ = key_with_schedule(a, team)
    assert api_as(owner).patch(url(a, "keys", key.id), {"name": "x"}, format="json").status_code == 400
    assert api_as(owner).patch(url(a, "keys", uuid.uuid4()), {"rotation_days": 3}, format="json").status_code == 404
    assert api_as(owner).patch(url(b, "keys", key.id), {"rotation_days": 3}, format="json").status_code == 404


def test_a_due_key_is_rotated_sealed_announced_and_revealed_once(org_a, team, api_as, settings,
                                                               django_capture_on_commit_callbacks):
    a, owner = org_a
    settings.GATEHOUSE_KEY_ROTATION_GRACE_SECONDS = 3600
    key, old_secret = key_with_schedule(a, team, rotation_days=30)
    not_due, _ = key_with_schedule(a, team, rotation_days=30)
    make_due(a, key)
    with django_capture_on_commit_callbacks() as callbacks:
        assert virtual_keys_rotate_due_for_org.apply(args=[str(a.id)]).get() == 1
    assert len(callbacks) == 2  # the gateway cache generation and the webhook delivery

    old, new = secrets_of(a, key)
    assert old.secret_hash == secret_hash(old_secret) and old.sealed_secret == ""
    assert abs(old.valid_until - (timezone.now() + datetime.timedelta(hours=1))) < datetime.timedelta(minutes=1)
    assert new.valid_until is None and new.sealed_secret and new.sealed_key_id
    assert len(secrets_of(a, not_due)) == 1
    with org_context(a.id):
        key.refresh_from_db()
        event = AuditEvent.objects.get(action="virtual_key.rotate.scheduled", target_id=str(key.id))
    assert key.next_rotation_at > timezone.now() + datetime.timedelta(days=29)
    assert "sk-gh-" not in str(event.changes) and new.sealed_secret not in str(event.changes)

    # Not due any more: the next run leaves it alone.
    assert virtual_keys_rotate_due_for_org.apply(args=[str(a.id)]).get() == 0

    client = api_as(owner)
    revealed = client.post(url(a, "keys", key.id, "reveal-successor"), format="json")
    assert revealed.status_code == 200, revealed.json()
    secret = revealed.json()["secret"]
    assert secret.startswith("sk-gh-") and secret_hash(secret) == new.secret_hash and secret[-4:] == key.last_four
    assert secrets_of(a, key)[1].sealed_secret == ""  # wiped as it was shown
    again = client.post(url(a, "keys", key.id, "reveal-successor"), format="json")
    assert again.status_code == 410 and "already revealed" in again.json()["detail"]
    with org_context(a.id):
        assert AuditEvent.objects.filter(action="virtual_key.successor_reveal", target_id=str(key.id)).count() == 1


def test_a_manual_rotation_supersedes_an_unrevealed_successor(org_a, team, api_as):
    a, owner = org_a
    key, _ = key_with_schedule(a, team)
    make_due(a, key)
    virtual_keys_rotate_due_for_org.apply(args=[str(a.id)])
    response = api_as(owner).post(url(a, "keys", key.id, "rotate"), {"grace_seconds": 0}, format="json")
    assert response.status_code == 200
    assert not any(row.sealed_secret for row in secrets_of(a, key))
    assert api_as(owner).post(url(a, "keys", key.id, "reveal-successor"), format="json").status_code == 410


def test_reveal_is_refused_without_a_scheduled_rotation_to_members_and_for_another_org(org_a, org_b, team, add_member,
                                                                                      api_as):
    (a, owner), (b, owner_b) = org_a, org_b
    key, _ = key_with_schedule(a, team)
    assert api_as(owner).post(url(a, "keys", key.id, "reveal-successor"), format="json").status_code == 410
    make_due(a, key)
    virtual_keys_rotate_due_for_org.apply(args=[str(a.id)])
    member = add_member(a, "member")
    assert api_as(member).post(url(a, "keys", key.id, "reveal-successor"), format="json").status_code == 403
    assert api_as(owner_b).post(url(b, "keys", key.id, "reveal-successor"), format="json").status_code == 404
    assert secrets_of(a, key)[-1].sealed_secret  # still there for an admin of org A


def test_a_revoked_key_loses_its_schedule_instead_of_rotating(org_a, team):
    a, _ = org_a
    key, _ = key_with_schedule(a, team)
    with org_context(a.id):
        services.virtual_key_revoke(org=a, key=key, actor=SYSTEM)
    make_due(a, key)
    assert virtual_keys_rotate_due_for_org.apply(args=[str(a.id)]).get() == 0
    assert len(secrets_of(a, key)) == 1
    with org_context(a.id):
        assert VirtualKey.objects.get(id=key.id).next_rotation_at is None


def test_reencryption_covers_credentials_sso_and_unrevealed_secrets(org_a, team, settings):
    a, _ = org_a
    old, new = encryption_key_generate(), encryption_key_generate()
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"old:{old}"
    catalog_create(a)
    key, _ = key_with_schedule(a, team)
    make_due(a, key)
    virtual_keys_rotate_due_for_org.apply(args=[str(a.id)])
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new},old:{old}"
    assert secrets_reencrypt_for_org.apply(args=[str(a.id)]).get() == 2
    assert secrets_reencrypt_for_org.apply(args=[str(a.id)]).get() == 0
    with org_context(a.id):
        assert ProviderCredential.objects.get().encryption_key_id == "new"
        assert VirtualKeySecret.objects.exclude(sealed_secret="").get().sealed_key_id == "new"
    settings.GATEHOUSE_ENCRYPTION_KEYS = f"new:{new}"  # the old key can now leave the ring
    with org_context(a.id):
        assert services.virtual_key_successor_reveal(org=a, key=key, actor=SYSTEM).startswith("sk-gh-")


def test_the_rotation_report_lists_secrets_older_than_the_policy(org_a, org_b, api_as):
    (a, owner), (b, _) = org_a, org_b
    credential, _, _ = catalog_create(a)
    catalog_create(b)
    client = api_as(owner)
    assert client.get(f"/api/v1/orgs/{a.slug}/secrets/rotation-report").json() == []
    with org_context(a.id):
        ProviderCredential.objects.filter(id=credential.id).update(updated_at=timezone.now() - datetime.timedelta(days=100))
    report = client.get(f"/api/v1/orgs/{a.slug}/secrets/rotation-report").json()
    assert [(row["kind"], row["name"], row["age_days"]) for row in report] == [("provider_credential", "openai-main", 100)]
    a.secret_rotation_days = 365
    a.save()
    assert client.get(f"/api/v1/orgs/{a.slug}/secrets/rotation-report").json() == []


def test_the_rotation_report_is_for_admins(org_a, add_member, api_as):
    a, _ = org_a
    assert api_as(add_member(a, "member")).get(f"/api/v1/orgs/{a.slug}/secrets/rotation-report").status_code == 403
