import pytest

from tenants.context import org_context
from tenants.models import Team
from tests.conftest import TEST_PASSWORD as PASSWORD

pytestmark = pytest.mark.django_db


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


def test_login_of_an_owner_without_mfa_leads_to_enrolment(client, owner_with_password):
    org, owner = owner_with_password
    response = client.post("/login/", {"username": owner.email, "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == f"/account/mfa/?next=%2Forgs%2F{org.slug}%2F"
    assert b"Your role in this org requires two-factor authentication" in response.content


def test_a_verified_owner_lands_on_the_only_org_and_creates_a_team(client, console_as, owner_with_password):
    org, owner = owner_with_password
    console_as(owner)
    assert client.get("/", follow=True).redirect_chain[-1][0] == f"/orgs/{org.slug}/"
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "research", "team-name": "Research"}, follow=True)
    assert b"Team research created." in response.content
    with org_context(org.id):
        assert Team.objects.filter(org=org, slug="research").exists()


def test_bad_team_form_shows_field_errors(client, console_as, owner_with_password):
    org, owner = owner_with_password
    console_as(owner)
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "Not A Slug", "team-name": ""})
    assert response.status_code == 400
    assert b"Use 1 to 50 lower-case letters" in response.content and b"This field is required" in response.content
    client.post(f"/orgs/{org.slug}/", {"team-slug": "dup", "team-name": "Dup"})
    response = client.post(f"/orgs/{org.slug}/", {"team-slug": "dup", "team-name": "Dup"})
    assert b"A team with this slug already exists" in response.content


def test_member_invite_from_the_console(client, console_as, owner_with_password):
    org, owner = owner_with_password
    console_as(owner)
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
    logged_in = client.post("/login/", {"username": "inv@x.example", "password": PASSWORD}, follow=True)
    assert logged_in.redirect_chain[-1][0] == f"/orgs/{org.slug}/"
    client.post("/logout/")
    assert b"This link has expired" in client.get(path, follow=True).content
    # Existing users with a password get no link.
    again = api_as(owner).post(f"/api/v1/orgs/{org.slug}/members/", {"email": owner.email}, format="json")
    assert again.status_code == 409


def test_the_org_switcher_lists_every_org_and_marks_the_current_one(client, console_as, org_a, org_b, add_member):
    (a, owner_a), (b, _) = org_a, org_b
    add_member(b, "viewer", email=owner_a.email)
    console_as(owner_a)
    page = client.get(f"/orgs/{a.slug}/").content.decode()
    switcher = page[page.index('id="org-switcher"'):page.index("</details>")]
    assert f'href="/orgs/{a.slug}/" aria-current="page"' in switcher and f'href="/orgs/{b.slug}/"' in switcher
    assert client.get(f"/orgs/{b.slug}/").status_code == 200
