from django.apps import AppConfig


class RequestlogsConfig(AppConfig):
    name = "requestlogs"
    default_auto_field = "django.db.models.BigAutoField"
