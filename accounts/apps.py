from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from accounts import receivers, schema  # noqa: F401  (audit receivers; OpenAPI security schemes)
