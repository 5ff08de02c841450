from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found, server_error
from django_otp.admin import OTPAdminSite
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.apis import AdminTokenDetailApi, AdminTokenListApi, MemberMfaResetApi
from audit.apis import AuditEventExportApi, AuditEventListApi
from config.health import healthz, readyz
from keys.apis import (
    AliasDetailApi,
    AliasListApi,
    CredentialDetailApi,
    CredentialListApi,
    DeploymentDetailApi,
    DeploymentListApi,
    VirtualKeyDetailApi,
    VirtualKeyListApi,
    VirtualKeyRotateApi,
)
from proxy.metrics import metrics_view
from requestlogs.apis import DailyUsageListApi, RequestLogExportApi, RequestLogListApi
from sso.apis import SsoConnectionApi
from tenants.apis import (
    MemberDetailApi,
    MemberListApi,
    OrgDetailApi,
    OrgWebhookSecretApi,
    OrgListApi,
    TeamDetailApi,
    TeamListApi,
    TeamMemberDetailApi,
    TeamMemberListApi,
)

org_api = [
    path("request-logs/", RequestLogListApi.as_view(), name="request-log-list"),
    path("request-logs/export", RequestLogExportApi.as_view(), name="request-log-export"),
    path("usage/daily/", DailyUsageListApi.as_view(), name="daily-usage-list"),
    path("", OrgDetailApi.as_view(), name="org-detail"),
    path("webhook-secret/", OrgWebhookSecretApi.as_view(), name="org-webhook-secret"),
    path("audit-events/", AuditEventListApi.as_view(), name="audit-event-list"),
    path("audit-events/export", AuditEventExportApi.as_view(), name="audit-event-export"),
    path("teams/", TeamListApi.as_view(), name="team-list"),
    path("teams/<str:team_id>/", TeamDetailApi.as_view(), name="team-detail"),
    path("teams/<str:team_id>/members/", TeamMemberListApi.as_view(), name="team-member-list"),
    path(
        "teams/<str:team_id>/members/<str:team_membership_id>/",
        TeamMemberDetailApi.as_view(),
        name="team-member-detail",
    ),
    path("members/", MemberListApi.as_view(), name="member-list"),
    path("members/<str:membership_id>/", MemberDetailApi.as_view(), name="member-detail"),
    path("members/<str:membership_id>/mfa/", MemberMfaResetApi.as_view(), name="member-mfa-reset"),
    path("sso/", SsoConnectionApi.as_view(), name="sso-connection"),
    path("tokens/", AdminTokenListApi.as_view(), name="admin-token-list"),
    path("tokens/<str:token_id>/", AdminTokenDetailApi.as_view(), name="admin-token-detail"),
    path("credentials/", CredentialListApi.as_view(), name="credential-list"),
    path("credentials/<str:credential_id>/", CredentialDetailApi.as_view(), name="credential-detail"),
    path("deployments/", DeploymentListApi.as_view(), name="deployment-list"),
    path("deployments/<str:deployment_id>/", DeploymentDetailApi.as_view(), name="deployment-detail"),
    path("aliases/", AliasListApi.as_view(), name="alias-list"),
    path("aliases/<str:alias_id>/", AliasDetailApi.as_view(), name="alias-detail"),
    path("keys/", VirtualKeyListApi.as_view(), name="virtual-key-list"),
    path("keys/<str:key_id>/", VirtualKeyDetailApi.as_view(), name="virtual-key-detail"),
    path("keys/<str:key_id>/rotate/", VirtualKeyRotateApi.as_view(), name="virtual-key-rotate"),
]

api_v1 = [
    path("orgs/", OrgListApi.as_view(), name="org-list"),
    path("orgs/<str:org>/", include(org_api)),
]

# /admin/ needs a session verified with a second factor (django-otp).
admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("v1/", include("proxy.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("console.urls")),
]

MACHINE_PREFIXES = ("/api/", "/v1/")


def handler404(request, exception=None):
    if request.path.startswith(MACHINE_PREFIXES):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith(MACHINE_PREFIXES):
        return JsonResponse({"detail": "Internal error; it has been logged.", "code": "server_error"}, status=500)
    return server_error(request)
