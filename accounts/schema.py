"""OpenAPI descriptions of the management API's credentials (drf-spectacular)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AdminTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.AdminTokenAuthentication"
    name = "adminToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An admin API token (gha_...), role-bound."}


class MasterKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.MasterKeyAuthentication"
    name = "masterKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "GATEHOUSE_MASTER_KEY: creates orgs only."}


class VerifiedSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.VerifiedSessionAuthentication"
    name = "consoleSession"

    def get_security_definition(self, auto_schema):
        from django.conf import settings

        return {
            "type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME,
            "description": "A console session verified with a second factor (with the CSRF token on writes).",
        }
