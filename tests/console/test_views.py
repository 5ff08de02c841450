import pytest

from tenants.context import org_context
from tenants.models import Team

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture
def owner_with_password(org_a):
    org, owner = org_a
    owner.set_password(PASSWORD)
    owner.save()
    return org, owner


def test_login_page_renders(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"Log in to Gatehouse" in response.content


def test_console_requires_login(client, org_a):
    org, _ = org_a
    response = client.get(f"/orgs/{org.slug}/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_wrong_password_is_a_form_error(client, owner_with_password):
    _, owner = owner_with_password
    response = client.post("/login/", {"username": owner.email, "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct email and password" in response.content


def test_login_lands_on_the_only_org_and_a_team_can_be_created(client, owner_with_password):
    org, owner = owner_with_password
    response = client.post("/login/", {"username": owner.email, "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == f"/orgs/{org.slug}/"
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "research", "team-name": "Research"}, follow=True)
    assert b"Team research created." in response.content
    with org_context(org.id):
        assert Team.objects.filter(org=org, slug="research").exists()


def test_bad_team_form_shows_field_errors(client, owner_with_password):
    org, owner = owner_with_password
    client.force_login(owner)
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "Not A Slug", "team-name": ""})
    assert response.status_code == 400
    assert b"Use 1 to 50 lower-case letters" in response.content and b"This field is required" in response.content
    client.post(f"/orgs/{org.slug}/", {"team-slug": "dup", "team-name": "Dup"})
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "dup", "team-name": "Dup"})
    assert b"A team with this slug already exists" in response.content


def test_member_invite_from_the_console(client, owner_with_password):
    org, owner = owner_with_password
    client.force_login(owner)
    response = client.post(f"/orgs/{org.slug}/", {"invite-email": "new@x.example", "invite-role": "viewer"}, follow=True)
    assert b"new@x.example added to the org." in response.content
    response = client.post(f"/orgs/{org.slug}/", {"invite-email": "new@x.example", "invite-role": "viewer"})
    assert response.status_code == 400 and b"already a member" in response.content


def test_viewer_sees_no_forms_and_cannot_post(client, org_a, add_member):
    org, _ = org_a
    viewer = add_member(org, "viewer")
    client.force_login(viewer)
    page = client.get(f"/orgs/{org.slug}/")
    assert b"Create team" not in page.content
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "x", "team-name": "X"}, follow=True)
    assert b"needs the admin role" in response.content
    with org_context(org.id):
        assert not Team.objects.filter(org=org).exists()


def test_another_orgs_page_is_404(client, org_a, org_b):
    (a, owner_a), (b, _) = org_a, org_b
    client.force_login(owner_a)
    assert client.get(f"/orgs/{b.slug}/").status_code == 404


def test_home_lists_every_org_of_a_multi_org_user(client, org_a, org_b, add_member):
    (a, owner_a), (b, _) = org_a, org_b
    add_member(b, "viewer", email=owner_a.email)
    client.force_login(owner_a)
    page = client.get("/")
    assert page.status_code == 200 and a.slug.encode() in page.content and b.slug.encode() in page.content


def test_invited_person_sets_a_password_through_the_link_once(client, org_a, api_as):
    org, owner = org_a
    invited = api_as(owner).post(f"/api/v1/orgs/{org.slug}/members/", {"email": "inv@x.example"}, format="json").json()
    link = invited["invite_url"]
    assert link.startswith("http://testserver/invite/")
    path = link.removeprefix("http://testserver")
    form_page = client.get(path, follow=True)
    assert b"Set your password" in form_page.content
    set_path = form_page.redirect_chain[-1][0]
    response = client.post(set_path, {"new_password1": "short", "new_password2": "short"})
    assert b"too short" in response.content
    response = client.post(set_path, {"new_password1": PASSWORD, "new_password2": PASSWORD}, follow=True)
    assert b"Password set" in response.content
    assert client.login(username="inv@x.example", password=PASSWORD)
    client.logout()
    assert b"This link has expired" in client.get(path, follow=True).content
    # Existing users with a password get no link.
    again = api_as(owner).post(f"/api/v1/orgs/{org.slug}/members/", {"email": owner.email}, format="json")
    assert again.status_code == 409
