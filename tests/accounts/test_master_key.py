import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tenants.context import org_context
from tenants.models import Membership, Org

pytestmark = pytest.mark.django_db
MASTER = "test-master-key-0123456789"


@pytest.fixture
def master(settings) -> APIClient:
    settings.GATEHOUSE_MASTER_KEY = MASTER
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}")
    return client


def test_master_key_creates_an_org_and_its_first_owner(master):
    response = master.post(
        "/api/v1/orgs/", {"slug": "acme", "name": "Acme", "data_region": "eu", "owner_email": "Boss@Acme.example"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["owner_invite_url"].startswith("http://testserver/invite/")
    org = Org.objects.get(slug="acme")
    assert org.data_region == "eu"
    with org_context(org.id):
        owner = Membership.objects.get(org=org)
        assert owner.role == "owner" and owner.user.email == "boss@acme.example"
        event = AuditEvent.objects.get(action="org.create")
        assert event.actor_kind == "master_key"


def test_master_key_cannot_do_anything_else(master, org_a):
    a, _ = org_a
    assert master.get("/api/v1/orgs/").status_code == 403
    assert master.get(f"/api/v1/orgs/{a.slug}/").status_code == 403
    assert master.post(f"/api/v1/orgs/{a.slug}/teams/", {"slug": "x", "name": "x"}, format="json").status_code == 403


def test_wrong_or_unset_master_key_is_refused(settings):
    settings.GATEHOUSE_MASTER_KEY = ""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer anything")
    body = {"slug": "x", "name": "x", "owner_email": "a@b.example"}
    assert client.post("/api/v1/orgs/", body, format="json").status_code == 401
    settings.GATEHOUSE_MASTER_KEY = MASTER
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {MASTER}x")
    assert client.post("/api/v1/orgs/", body, format="json").status_code == 401


def test_users_cannot_create_orgs(org_a, api_as):
    _, owner = org_a
    response = api_as(owner).post("/api/v1/orgs/", {"slug": "mine", "name": "x", "owner_email": owner.email}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body, field, status",
    [
        ({"slug": "UPPER", "name": "x", "owner_email": "a@b.example"}, "slug", 400),
        ({"slug": "ok", "name": "x", "owner_email": "nope"}, "owner_email", 400),
        ({"slug": "ok", "name": "x", "owner_email": "a@b.example", "data_region": "mars"}, "data_region", 400),
        ({"slug": "ok", "name": "x" * 101, "owner_email": "a@b.example"}, "name", 400),
        ({"slug": "ok", "name": "x", "owner_email": "a@b.example", "plan": "free"}, "plan", 400),
    ],
)
def test_org_create_bad_input(master, body, field, status):
    response = master.post("/api/v1/orgs/", body, format="json")
    assert response.status_code == status and field in response.json()


def test_duplicate_org_slug_is_a_conflict(master, org_a):
    a, _ = org_a
    response = master.post("/api/v1/orgs/", {"slug": a.slug, "name": "x", "owner_email": "a@b.example"}, format="json")
    assert response.status_code == 409 and response.json() == {"slug": ["An org with this slug already exists."]}
    assert get_user_model().objects.filter(email="a@b.example").count() == 0
