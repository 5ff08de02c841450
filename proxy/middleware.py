"""Sends /v1/ requests straight to the proxy views, ahead of the console's middleware.

The gateway API needs no session, CSRF token, auth user or flash messages; skipping those
layers is a measurable share of the per-request CPU budget. Security headers still come from
config.security_headers.SecurityHeadersMiddleware, which sits outside this one.
"""
from django.urls import Resolver404, resolve

from audit.origin import request_id_for
from proxy.errors import ProxyError, error_response

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
            return error_response(error, anthropic=False, request_id=request_id_for(request))
        return match.func(request, *match.args, **match.kwargs)
