"""django-axes hooks: which name a failed login counts against."""


def lockout_username(request, credentials) -> str | None:
    """Emails are case-insensitive here, so `Alice@x` and `alice@x` share one failure count."""
    username = (credentials or {}).get("username") or request.POST.get("username")
    return username.strip().lower() if username else None
