"""Nobody can gain a role they were not given, and an org always keeps an owner."""
import pytest

from tenants.context import org_context
from tenants.models import Membership

pytestmark = pytest.mark.django_db


def url(org, *parts) -> str:
    return "/api/v1/orgs/" + "/".join([org.slug, *parts]) + "/"


def membership_id(org, user) -> str:
    with org_context(org.id):
        return str(Membership.objects.get(org=org, user=user).id)


def role_of(org, user) -> str:
    with org_context(org.id):
        return Membership.objects.get(org=org, user=user).role


def test_member_cannot_raise_their_own_role(org_a, add_member, api_as):
    a, _ = org_a
    member = add_member(a, "member")
    for role in ("admin", "owner"):
        response = api_as(member).patch(url(a, "members", membership_id(a, member)), {"role": role}, format="json")
        assert response.status_code == 403
    assert role_of(a, member) == "member"


def test_admin_cannot_raise_their_own_role_to_owner(org_a, add_member, api_as):
    a, _ = org_a
    admin = add_member(a, "admin")
    response = api_as(admin).patch(url(a, "members", membership_id(a, admin)), {"role": "owner"}, format="json")
    assert response.status_code == 403
    assert role_of(a, admin) == "admin"


def test_admin_cannot_create_an_owner(org_a, add_member, api_as):
    a, _ = org_a
    admin = add_member(a, "admin")
    client = api_as(admin)
    assert client.post(url(a, "members"), {"email": "x@y.example", "role": "owner"}, format="json").status_code == 403
    member = add_member(a, "member")
    assert client.patch(url(a, "members", membership_id(a, member)), {"role": "owner"}, format="json").status_code == 403
    assert role_of(a, member) == "member"


def test_admin_cannot_demote_or_remove_an_owner(org_a, add_member, api_as):
    a, owner = org_a
    admin = add_member(a, "admin")
    client = api_as(admin)
    owner_id = membership_id(a, owner)
    assert client.patch(url(a, "members", owner_id), {"role": "viewer"}, format="json").status_code == 403
    assert client.delete(url(a, "members", owner_id)).status_code == 403
    assert role_of(a, owner) == "owner"


def test_admin_can_manage_members_and_admins(org_a, add_member, api_as):
    a, _ = org_a
    admin, other_admin, member = add_member(a, "admin"), add_member(a, "admin"), add_member(a, "member")
    client = api_as(admin)
    assert client.patch(url(a, "members", membership_id(a, member)), {"role": "admin"}, format="json").status_code == 200
    assert client.patch(url(a, "members", membership_id(a, other_admin)), {"role": "viewer"}, format="json").status_code == 200


def test_last_owner_cannot_leave_be_removed_or_demoted(org_a, api_as):
    a, owner = org_a
    client = api_as(owner)
    owner_id = membership_id(a, owner)
    response = client.delete(url(a, "members", owner_id))
    assert response.status_code == 409 and "last owner" in response.json()["detail"]
    response = client.patch(url(a, "members", owner_id), {"role": "admin"}, format="json")
    assert response.status_code == 409
    assert role_of(a, owner) == "owner"


def test_an_owner_may_step_down_once_another_owner_exists(org_a, add_member, api_as):
    a, owner = org_a
    second = add_member(a, "admin")
    client = api_as(owner)
    assert client.patch(url(a, "members", membership_id(a, second)), {"role": "owner"}, format="json").status_code == 200
    assert client.patch(url(a, "members", membership_id(a, owner)), {"role": "admin"}, format="json").status_code == 200
    client = api_as(owner)  # a role change logs the person out everywhere
    assert client.delete(url(a, "members", membership_id(a, owner))).status_code == 204


@pytest.mark.parametrize(
    "method, path_parts, body",
    [
        ("post", ("teams",), {"slug": "t", "name": "T"}),
        ("patch", (), {"name": "Mine now"}),
        ("post", ("members",), {"email": "friend@x.example", "role": "viewer"}),
    ],
)
def test_viewer_and_member_cannot_write(org_a, add_member, api_as, method, path_parts, body):
    a, _ = org_a
    for role in ("viewer", "member"):
        client = api_as(add_member(a, role))
        response = getattr(client, method)(url(a, *path_parts), body, format="json")
        assert response.status_code == 403, (role, path_parts)


def test_viewer_cannot_change_or_remove_others(org_a, add_member, api_as):
    a, owner = org_a
    viewer, member = add_member(a, "viewer"), add_member(a, "member")
    client = api_as(viewer)
    assert client.patch(url(a, "members", membership_id(a, member)), {"role": "viewer"}, format="json").status_code == 403
    assert client.delete(url(a, "members", membership_id(a, member))).status_code == 403
    # but may read, and may leave
    assert client.get(url(a, "members")).status_code == 200
    assert client.delete(url(a, "members", membership_id(a, viewer))).status_code == 204


def test_viewer_granted_team_admin_still_cannot_write(org_a, add_member, api_as):
    a, owner = org_a
    viewer = add_member(a, "viewer")
    client = api_as(owner)
    team = client.post(url(a, "teams"), {"slug": "t", "name": "T"}, format="json").json()
    client.post(
        url(a, "teams", team["id"], "members"), {"membership_id": membership_id(a, viewer), "is_team_admin": True}, format="json"
    )
    assert api_as(viewer).patch(url(a, "teams", team["id"]), {"name": "x"}, format="json").status_code == 403


def test_only_an_owner_changes_the_data_region(org_a, add_member, api_as):
    a, owner = org_a
    admin = add_member(a, "admin")
    assert api_as(admin).patch(url(a), {"data_region": "eu"}, format="json").status_code == 403
    assert api_as(owner).patch(url(a), {"data_region": "eu"}, format="json").json()["data_region"] == "eu"
