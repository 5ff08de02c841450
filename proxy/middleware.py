"""Sends /v1/ requests straight to the proxy views, ahead of the console's middleware.

The gateway API needs no session, CSRF token, auth user or flash messages; skipping those
layers is a measurable share of the per-request CPU budget. The few response headers the
skipped security middleware would add are set here.
"""
from django.conf import settings
from django.urls import Resolver404, resolve

from proxy.errors import ProxyError, error_response
from proxy.views import request_id_for

PREFIX = "/v1/"


class ProxyFastPathMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            error = ProxyError(404, f"Unknown endpoint {request.path_info}.", code="unknown_endpoint")
            response = error_response(error, anthropic=False, request_id=request_id_for(request))
        else:
            response = match.func(request, *match.args, **match.kwargs)
        response["X-Content-Type-Options"] = "nosniff"
        response["Referrer-Policy"] = settings.SECURE_REFERRER_POLICY
        if settings.SECURE_HSTS_SECONDS and request.is_secure():
            response["Strict-Transport-Security"] = f"max-age={settings.SECURE_HSTS_SECONDS}; includeSubDomains"
        return response
