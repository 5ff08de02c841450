from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found, server_error
from django_otp.admin import OTPAdminSite
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.apis import AdminTokenDetailApi, AdminTokenListApi, MemberMfaResetApi
from audit.apis import AuditEventExportApi, AuditEventListApi
from config.health import healthz, readyz
from guardrails.apis import (
    CustomDetectorDetailApi,
    CustomDetectorListApi,
    KeyGuardrailsApi,
    OrgGuardrailPolicyApi,
    TeamGuardrailsApi,
)
from keys.apis import (
    AliasDetailApi,
    AliasListApi,
    CredentialDetailApi,
    CredentialListApi,
    DeploymentDetailApi,
    DeploymentListApi,
    SecretRotationReportApi,
    VirtualKeyDetailApi,
    VirtualKeyListApi,
    VirtualKeyRotateApi,
    VirtualKeySuccessorRevealApi,
)
from proxy.metrics import metrics_view
from privacy.apis import DataSubjectArchiveApi, DataSubjectRequestDetailApi, DataSubjectRequestListApi
from requestlogs.apis import DailyUsageListApi, RequestLogExportApi, RequestLogListApi
from sso.apis import SsoConnectionApi
from spend.apis import (
    BudgetDetailApi,
    BudgetListApi,
    BudgetStateApi,
    RateLimitDetailApi,
    RateLimitListApi,
    SpendExportApi,
    SpendReportApi,
)
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
    path("budgets/", BudgetListApi.as_view(), name="budget-list"),
    path("budgets/<str:budget_id>/", BudgetDetailApi.as_view(), name="budget-detail"),
    path("budgets/<str:budget_id>/state/", BudgetStateApi.as_view(), name="budget-state"),
    path("rate-limits/", RateLimitListApi.as_view(), name="rate-limit-list"),
    path("rate-limits/<str:limit_id>/", RateLimitDetailApi.as_view(), name="rate-limit-detail"),
    path("spend/", SpendReportApi.as_view(), name="spend-report"),
    path("spend/export", SpendExportApi.as_view(), name="spend-export"),
    path("keys/", VirtualKeyListApi.as_view(), name="virtual-key-list"),
    path("keys/<str:key_id>/", VirtualKeyDetailApi.as_view(), name="virtual-key-detail"),
    path("keys/<str:key_id>/rotate/", VirtualKeyRotateApi.as_view(), name="virtual-key-rotate"),
    path("keys/<str:key_id>/reveal-successor/", VirtualKeySuccessorRevealApi.as_view(), name="virtual-key-reveal-successor"),
    path("secrets/rotation-report", SecretRotationReportApi.as_view(), name="secret-rotation-report"),
    path("privacy-requests/", DataSubjectRequestListApi.as_view(), name="privacy-request-list"),
    path("privacy-requests/<str:request_id>/", DataSubjectRequestDetailApi.as_view(), name="privacy-request-detail"),
    path("privacy-requests/<str:request_id>/archive", DataSubjectArchiveApi.as_view(), name="privacy-request-archive"),
    path("guardrails/policy/", OrgGuardrailPolicyApi.as_view(), name="guardrail-policy"),
    path("guardrails/teams/<str:team_id>/", TeamGuardrailsApi.as_view(), name="team-guardrails"),
    path("guardrails/keys/<str:key_id>/", KeyGuardrailsApi.as_view(), name="key-guardrails"),
    path("guardrails/detectors/", CustomDetectorListApi.as_view(), name="custom-detector-list"),
    path("guardrails/detectors/<str:detector_id>/", CustomDetectorDetailApi.as_view(), name="custom-detector-detail"),
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
