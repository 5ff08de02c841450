from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/mfa/", views.mfa_challenge, name="mfa-challenge"),
    path("login/sso/", views.sso_start, name="sso-start"),
    path("logout/", views.logout, name="logout"),
    path("sso/<slug:org_slug>/start/", views.sso_start_for_org, name="sso-start-org"),
    path("sso/<slug:org_slug>/callback/", views.sso_callback, name="sso-callback"),
    path("account/mfa/", views.mfa_settings, name="mfa-settings"),
    path("account/sessions/", views.session_list, name="sessions"),
    path("orgs/<slug:org_slug>/", views.org, name="org"),
    path("invite/<uidb64>/<token>/", views.InviteAcceptView.as_view(), name="invite-accept"),
]
