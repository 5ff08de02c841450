"""Audit of login failures and lockouts, which happen inside Django's `authenticate` and django-axes."""
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from accounts.models import User
from accounts.services import request_actor, security_log, user_security_event_record


def _user_for(username: str | None) -> User | None:
    return User.objects.filter(email=username.strip().lower()).first() if username else None


@receiver(user_login_failed, dispatch_uid="accounts.login_failed_audit")
def login_failed_audit(sender, credentials, request=None, **kwargs):
    if request is None or getattr(request, "axes_locked_out", False):
        return  # a refused attempt during a lockout is recorded as `auth.lockout`
    username = credentials.get("username")
    user = _user_for(username)
    if user is None:
        security_log.info("auth.login_failed unknown user=%s ip=%s", username, request.META.get("REMOTE_ADDR"))
        return
    user_security_event_record(user=user, action="auth.login_failed", actor=request_actor(request=request, user=user),
                               changes={"reason": [None, "wrong_password"]})


@receiver(user_locked_out, dispatch_uid="accounts.locked_out_audit")
def locked_out_audit(sender, request, username, ip_address, **kwargs):
    if getattr(request, "gatehouse_lockout_recorded", False):
        return  # django-axes may signal one refused attempt more than once
    request.gatehouse_lockout_recorded = True
    user = _user_for(username)
    if user is None:
        security_log.warning("auth.lockout unknown user=%s ip=%s", username, ip_address)
        return
    user_security_event_record(user=user, action="auth.lockout", actor=request_actor(request=request, user=user),
                               changes={"ip": [None, ip_address]})
