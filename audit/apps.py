from django.apps import AppConfig

# Field-level change history (django-auditlog) of the tenant models that an auditor asks about.
# Secrets stay out: the credential's ciphertext and the shown ends of virtual keys are excluded, the
# keys' secret hashes live in VirtualKeySecret, which is not tracked, and every entry's changes are
# masked as well (audit.masking).
CHANGE_HISTORY_MODELS = {
    "tenants.Team": {},
    "tenants.Membership": {},
    "keys.ProviderCredential": {"exclude_fields": ["ciphertext"]},
    "keys.Deployment": {},
    "keys.ModelAlias": {},
    "keys.VirtualKey": {"exclude_fields": ["prefix", "last_four"]},
}


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from auditlog.registry import auditlog

        from audit import checks  # noqa: F401  (registers the system check)

        for label, options in CHANGE_HISTORY_MODELS.items():
            auditlog.register(self.apps.get_model(label), **options)
