from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.env import BASE_DIR, database_settings_from_url, env_bool, env_int, env_list, env_str

DEBUG = env_bool("DEBUG", False)
# `make run` / `make test` generate these into .data/secrets.env on first use; a
# deployment sets them in the environment. There is no built-in default to forget.
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is not set (run `make run`, or set it in the environment).")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Platform master key: may create orgs and their first owner, nothing else.
GATEHOUSE_MASTER_KEY = env_str("GATEHOUSE_MASTER_KEY", "")
# AES-256-GCM key ring for provider credentials at rest: "kid:base64key,..." (first one encrypts).
GATEHOUSE_ENCRYPTION_KEYS = env_str("GATEHOUSE_ENCRYPTION_KEYS")
# Upstream hosts/networks allowed despite being non-public (see keys/ssrf.py).
GATEHOUSE_UPSTREAM_ALLOWLIST = env_list("GATEHOUSE_UPSTREAM_ALLOWLIST", "")
# Proxy reliability: retries per deployment (429/5xx/connection errors/timeouts), then the next
# deployment of the alias; a deployment failing this often within the window is skipped for a while.
GATEHOUSE_RETRIES_PER_DEPLOYMENT = env_int("GATEHOUSE_RETRIES_PER_DEPLOYMENT", 1)
GATEHOUSE_RETRY_BACKOFF_SECONDS = float(env_str("GATEHOUSE_RETRY_BACKOFF_SECONDS", "0.2"))
GATEHOUSE_FAILURES_BEFORE_COOLDOWN = env_int("GATEHOUSE_FAILURES_BEFORE_COOLDOWN", 3)
GATEHOUSE_FAILURE_WINDOW_SECONDS = env_int("GATEHOUSE_FAILURE_WINDOW_SECONDS", 60)
GATEHOUSE_COOLDOWN_SECONDS = env_int("GATEHOUSE_COOLDOWN_SECONDS", 30)
GATEHOUSE_DEFAULT_MAX_TOKENS = env_int("GATEHOUSE_DEFAULT_MAX_TOKENS", 4096)
GATEHOUSE_MAX_OUTPUT_TOKENS = env_int("GATEHOUSE_MAX_OUTPUT_TOKENS", 262144)
# /metrics: a bearer token, or a client address in these networks.
GATEHOUSE_METRICS_TOKEN = env_str("GATEHOUSE_METRICS_TOKEN", "")
GATEHOUSE_METRICS_ALLOW = env_list("GATEHOUSE_METRICS_ALLOW", "127.0.0.1/32,::1/128")
# OpenTelemetry: a span per proxied request is exported over OTLP/HTTP when this is set.
GATEHOUSE_OTLP_ENDPOINT = env_str("GATEHOUSE_OTLP_ENDPOINT", "")
GATEHOUSE_OTEL_SERVICE_NAME = env_str("GATEHOUSE_OTEL_SERVICE_NAME", "gatehouse")
# Pepper for keyed hashes of secrets (admin tokens, virtual keys); lives outside the database.
GATEHOUSE_SECRET_PEPPER = env_str("GATEHOUSE_SECRET_PEPPER") or SECRET_KEY
# Audit trail (docs/audit.md): the HMAC key of the per-org hash chains, held outside the database and kept
# as long as the events; and how many proxies of ours append to X-Forwarded-For (0: use the socket peer).
GATEHOUSE_AUDIT_HMAC_KEY = env_str("GATEHOUSE_AUDIT_HMAC_KEY")
GATEHOUSE_TRUSTED_PROXY_COUNT = env_int("GATEHOUSE_TRUSTED_PROXY_COUNT", 0)
# Data-subject requests (docs/privacy.md): days until due, days an access archive can be downloaded, rows per
# erasure batch and a pause between batches, and how long a run may go silent before the sweep resumes it.
GATEHOUSE_DSR_DUE_DAYS = env_int("GATEHOUSE_DSR_DUE_DAYS", 30)
GATEHOUSE_DSR_ARCHIVE_DAYS = env_int("GATEHOUSE_DSR_ARCHIVE_DAYS", 7)
GATEHOUSE_DSR_BATCH_ROWS = env_int("GATEHOUSE_DSR_BATCH_ROWS", 1000)
GATEHOUSE_DSR_BATCH_PAUSE_SECONDS = float(env_str("GATEHOUSE_DSR_BATCH_PAUSE_SECONDS", "0"))
# An erasure's second pass, this long after the first, catches request-log and ledger rows that web processes
# still held in their write buffers (written every 0.5 s) when the first pass ran.
GATEHOUSE_DSR_LATE_ROWS_SECONDS = float(env_str("GATEHOUSE_DSR_LATE_ROWS_SECONDS", "2"))
GATEHOUSE_DSR_STALL_SECONDS = env_int("GATEHOUSE_DSR_STALL_SECONDS", 600)
# Scheduled virtual-key rotation keeps the previous secret valid this long (docs/operations.md).
GATEHOUSE_KEY_ROTATION_GRACE_SECONDS = env_int("GATEHOUSE_KEY_ROTATION_GRACE_SECONDS", 24 * 3600)
# /readyz reports beat as failing when no scheduled job has started for this long (0: never); see docs/operations.md.
GATEHOUSE_BEAT_STALE_SECONDS = env_int("GATEHOUSE_BEAT_STALE_SECONDS", 3600)
# Guardrail detectors scan at most this many characters of each text part (docs/guardrails.md).
GATEHOUSE_GUARDRAIL_MAX_SCAN_CHARS = env_int("GATEHOUSE_GUARDRAIL_MAX_SCAN_CHARS", 200_000)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.admin",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "auditlog",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "accounts",
    "tenants",
    "audit",
    "keys",
    "sso",
    "requestlogs",
    "guardrails",
    "spend",
    "privacy",
    "jobs",
    "console",
]

MIDDLEWARE = [
    # Outermost, so that every response (the /v1/ fast path included) carries the security headers.
    "config.security_headers.SecurityHeadersMiddleware",
    "proxy.middleware.ProxyFastPathMiddleware",
    "audit.origin.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.SessionLifetimeMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.org_switcher",
            ],
        },
    },
]

# `default` is the application role (NOSUPERUSER NOBYPASSRLS, owns nothing): the web
# server, workers and tests use it, so row-level security always applies.
# `owner` owns the schema and runs migrations only.
DATABASE_URL = env_str("DATABASE_URL", "postgresql://gatehouse_app:gatehouse_app@127.0.0.1:5432/gatehouse")
OWNER_DATABASE_URL = env_str(
    "OWNER_DATABASE_URL", "postgresql://gatehouse_owner:gatehouse_owner@127.0.0.1:5432/gatehouse"
)
# A superuser connection, used only by `ops/services.py` and the test set-up to create roles and databases.
ADMIN_DATABASE_URL = env_str("ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A bounded pool per process: under gevent every in-flight request is a greenlet, and an
# unbounded "connection per greenlet" would exhaust PostgreSQL's max_connections.
DATABASE_POOL = {"min_size": 1, "max_size": env_int("DATABASE_POOL_MAX", 10), "timeout": env_int("DATABASE_POOL_TIMEOUT", 10)}
DATABASES = {
    "default": {**database_settings_from_url(DATABASE_URL), "OPTIONS": {"pool": DATABASE_POOL}},
    "owner": {**database_settings_from_url(OWNER_DATABASE_URL), "CONN_MAX_AGE": 0},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
GATEHOUSE_REDIS_POOL_MAX = env_int("GATEHOUSE_REDIS_POOL_MAX", 64)
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

AUTH_USER_MODEL = "accounts.User"
# django-auditlog: field-level change history, in an org-scoped, append-only table of ours.
AUDITLOG_LOGENTRY_MODEL = "audit.ChangeLogEntry"
AUDITLOG_STORE_JSON_CHANGES = True
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out credentials before any password check
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"
ANONYMOUS_USER_NAME = None  # django-guardian: no anonymous user row

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Browsers accept Secure cookies from http://localhost, so the default holds for local use too.
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_HTTPONLY = True  # nothing reads it from JavaScript: forms and Swagger UI embed the token
CSRF_COOKIE_SAMESITE = "Lax"
# Sessions (see docs/identity.md). Each request slides the idle timeout; `auth_at` bounds the total lifetime.
SESSION_ENGINE = "accounts.session_store"
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_TIMEOUT_SECONDS", 15 * 60)
SESSION_SAVE_EVERY_REQUEST = True
GATEHOUSE_SESSION_MAX_AGE_SECONDS = env_int("SESSION_MAX_AGE_SECONDS", 12 * 3600)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes and scrapers inside the network
# No inline scripts or styles anywhere; `form-action` stays open because SSO logins post to the
# console and are then redirected to the org's identity provider. See config/security_headers.py.
GATEHOUSE_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# MFA (django-otp): TOTP apps show this issuer; failed codes back off 1, 2, 4, ... seconds per device.
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Gatehouse")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
GATEHOUSE_MFA_BACKUP_CODES = 10
GATEHOUSE_LOGIN_PENDING_SECONDS = 300  # between the password (or SSO) and the second factor

# Login throttling and lockout (django-axes): per email and client address, audited.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "accounts.lockout.lockout_username"
AXES_LOCKOUT_CALLABLE = "console.views.login_locked_out"
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_VERBOSE = False

# OpenID Connect single sign-on (sso/): allowed clock skew when checking ID token times.
GATEHOUSE_OIDC_CLOCK_SKEW_SECONDS = env_int("OIDC_CLOCK_SKEW_SECONDS", 60)
GATEHOUSE_OIDC_HTTP_TIMEOUT_SECONDS = env_int("OIDC_HTTP_TIMEOUT_SECONDS", 10)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 2 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.AdminTokenAuthentication",
        "accounts.authentication.MasterKeyAuthentication",
        "accounts.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse management API",
    "DESCRIPTION": "Orgs, teams, members, admin tokens, provider credentials, deployments, model aliases and "
    "virtual keys of a Gatehouse LLM gateway.",
    "ENUM_NAME_OVERRIDES": {"IdpRoleEnum": "sso.apis.IDP_ROLE_CHOICES", "DataRegionEnum": "tenants.models.DataRegion",
                            "DataSubjectRequestKindEnum": "privacy.models.RequestKind",
                            "DataSubjectRequestStatusEnum": "privacy.models.RequestStatus",
                            "BudgetScopeEnum": "spend.models.BudgetScope", "RateLimitScopeEnum": "spend.models.RateLimitScope"},
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / ".data" / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "admin-tokens-expire": {"task": "accounts.tasks.admin_tokens_expire_all_orgs", "schedule": 600.0},
    "audit-verify": {"task": "audit.tasks.audit_verify_all_orgs", "schedule": crontab(hour=3, minute=15)},
    "request-logs-expire": {"task": "requestlogs.tasks.request_logs_expire_all_orgs", "schedule": 3600.0},
    "virtual-keys-rotate": {"task": "keys.tasks.virtual_keys_rotate_due_all_orgs", "schedule": 3600.0},
    "secrets-reencrypt": {"task": "keys.tasks.secrets_reencrypt_all_orgs", "schedule": crontab(hour=2, minute=45)},
    "privacy-requests-check": {"task": "privacy.tasks.data_subject_requests_check_all_orgs", "schedule": 300.0},
    "privacy-archives-expire": {"task": "privacy.tasks.data_subject_archives_expire_all_orgs", "schedule": 3600.0},
    "spend-reservations-expire": {"task": "spend.tasks.spend_reservations_expire", "schedule": 60.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
