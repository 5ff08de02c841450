import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from tenants.checks import database_role_assert_safe  # noqa: E402  (needs the app registry)

database_role_assert_safe()
