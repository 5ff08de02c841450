from django.conf import settings
from django.core.checks import Error, register


@register()
def check_audit_hmac_key(app_configs=None, **kwargs):
    if settings.GATEHOUSE_AUDIT_HMAC_KEY:
        return []
    return [
        Error(
            "GATEHOUSE_AUDIT_HMAC_KEY is not set: audit events cannot be signed.",
            hint="Run `python -m ops.services ensure` (writes .data/secrets.env) or set it in the environment; "
            "keep it outside the database and never change it while its events are kept.",
            id="audit.E001",
        )
    ]
