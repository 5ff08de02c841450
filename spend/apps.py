from django.apps import AppConfig


class SpendConfig(AppConfig):
    name = "spend"
    default_auto_field = "django.db.models.BigAutoField"
