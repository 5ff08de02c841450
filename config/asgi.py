import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from tenants.checks import database_role_assert_safe  # noqa: E402  (needs the app registry)

database_role_assert_safe()
