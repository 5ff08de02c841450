"""The console in a real browser: password login with MFA, SSO through the real provider, lockout, idle timeout."""
import base64
import re
import time

from django_otp.oath import TOTP
from playwright.sync_api import expect

from sso.services import sso_connection_save
from tenants.context import org_context
from tenants.services import member_invite, org_create
from tests.browser.conftest import IDLE_TIMEOUT_SECONDS, LOGIN_FAILURE_LIMIT
from tests.conftest import SYSTEM, unique_slug
from tests.conftest import TEST_PASSWORD as PASSWORD


def org_with_member(role: str = "owner"):
    """A committed org and a person with a password in it (the owner, or a member of `role`)."""
    from accounts.models import User

    slug = unique_slug("web")
    org, owner_membership = org_create(slug=slug, name=f"Web {slug}", data_region="us",
                                       owner_email=f"owner@{slug}.example", actor=SYSTEM)
    user = owner_membership.user
    if role != "owner":
        with org_context(org.id):
            user = member_invite(org=org, email=f"{role}@{slug}.example", role=role, actor=SYSTEM, acting_role="owner").user
    user = User.objects.get(pk=user.pk)
    user.set_password(PASSWORD)
    user.save()
    return org, user


def password_login(page, email: str, password: str = PASSWORD):
    page.goto("/login/")
    page.fill("#password-login input[name=username]", email)
    page.fill("#password-login input[name=password]", password)
    page.click("#password-login button[type=submit]")


def test_password_login_with_mfa_enrolment_and_then_a_backup_code(page, console_url, committed):
    org, owner = org_with_member()
    password_login(page, owner.email)
    page.wait_for_url(re.compile(r"/account/mfa/\?next="))
    expect(page.locator("img.qr")).to_be_visible()
    secret = page.inner_text("#totp-secret")
    code = f"{TOTP(base64.b32decode(secret)).token():06d}"
    page.fill("#mfa-confirm input[name=code]", code)
    page.click("#mfa-confirm button[type=submit]")
    backup_code = page.locator("#backup-codes code").first.inner_text()
    page.click("#continue")
    page.wait_for_url(f"{console_url}/orgs/{org.slug}/")
    expect(page.locator("h1")).to_contain_text(org.name)

    page.click("header button:has-text('Log out')")
    page.wait_for_url(re.compile(r"/login/$"))
    password_login(page, owner.email)
    page.wait_for_url(re.compile(r"/login/mfa/"))
    page.fill("#mfa-challenge input[name=code]", backup_code)
    page.click("#mfa-challenge button[type=submit]")
    page.wait_for_url(f"{console_url}/orgs/{org.slug}/")
    page.goto("/account/sessions/")
    expect(page.locator("#session-list")).to_contain_text("this session")


def test_sso_login_against_the_real_provider(page, console_url, committed, oidc_provider, settings):
    settings.GATEHOUSE_UPSTREAM_ALLOWLIST = ["127.0.0.1/32"]
    org, _ = org_with_member()
    client = oidc_provider.client_register(redirect_uris=[f"{console_url}/sso/{org.slug}/callback/"])
    domain = f"{org.slug}.example"
    with org_context(org.id):
        sso_connection_save(org=org, actor=SYSTEM, issuer=oidc_provider.issuer, client_id=client["client_id"],
                            client_secret=client["client_secret"], domains=[domain])
    page.goto("/login/")
    page.fill("#sso-login input[name=email]", f"dev@{domain}")
    page.click("#sso-login button[type=submit]")
    page.wait_for_url(re.compile(re.escape(oidc_provider.issuer) + "/interaction/"))
    page.fill("#idp-email", f"dev@{domain}")
    page.click("#idp-submit")
    page.wait_for_url(f"{console_url}/orgs/{org.slug}/")
    expect(page.locator("main")).to_contain_text("you signed in with sso")
    expect(page.locator("main")).to_contain_text(f"dev@{domain}")


def test_lockout_after_repeated_failures(page, committed):
    _, viewer = org_with_member("viewer")
    for _ in range(LOGIN_FAILURE_LIMIT - 1):
        password_login(page, viewer.email, "wrong password")
        expect(page.locator("main")).to_contain_text("Please enter a correct email and password")
    password_login(page, viewer.email, "wrong password")
    expect(page.locator("main")).to_contain_text("Too many failed logins")
    password_login(page, viewer.email)
    expect(page.locator("main")).to_contain_text("Too many failed logins")
    assert "/login/" in page.url


def test_idle_timeout_logs_out(page, console_url, committed):
    org, viewer = org_with_member("viewer")
    password_login(page, viewer.email)
    page.wait_for_url(f"{console_url}/orgs/{org.slug}/")
    page.reload()
    expect(page.locator("h1")).to_contain_text(org.name)
    time.sleep(IDLE_TIMEOUT_SECONDS + 1)
    page.reload()
    page.wait_for_url(re.compile(r"/login/\?next="))
