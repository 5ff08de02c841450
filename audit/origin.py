"""Where a request came from: the client address, its user agent and its request id.

The proxy's request logs use the same rules as the audit trail, so both name a client and a
request the same way.

Client address: `X-Forwarded-For` is believed only as far as `GATEHOUSE_TRUSTED_PROXY_COUNT`
proxies of our own appended to it. Each proxy appends the address it received the request
from, so with N trusted proxies the client is the N-th entry from the right; everything left
of it was sent by the client and may be forged. With 0 (the default: no proxy in front), the
header is ignored and the socket peer (`REMOTE_ADDR`) is the client. A header shorter than N
means the request did not pass through all of our proxies, so it is not believed either.
"""
import contextvars
import ipaddress
import re
import uuid

from django.conf import settings

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
USER_AGENT_MAX_LENGTH = 256
REQUEST_ID_META_KEY = "gatehouse.request_id"

_current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request_id", default=None)


def _address(value: str) -> str | None:
    """An address as written by a proxy (optionally with a port), normalised; None when it is not one."""
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # v4:port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def client_ip(request) -> str | None:
    remote_addr = _address(request.META.get("REMOTE_ADDR") or "")
    trusted = settings.GATEHOUSE_TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote_addr
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < trusted:
        return remote_addr
    return _address(hops[-trusted]) or remote_addr


def user_agent(request) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:USER_AGENT_MAX_LENGTH]


def request_id_for(request) -> str:
    """The caller's `X-Request-Id` when it is well-formed (1-128 of A-Z a-z 0-9 . _ : -), else a new one.
    Stable for one request: the first answer is kept on the request."""
    known = request.META.get(REQUEST_ID_META_KEY)
    if known:
        return known
    offered = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = offered if REQUEST_ID_PATTERN.match(offered) else uuid.uuid4().hex
    request.META[REQUEST_ID_META_KEY] = request_id
    return request_id


def current_request_id() -> str | None:
    """The id of the request being served in this context (set by `RequestIdMiddleware`)."""
    return _current_request_id.get()


class RequestIdMiddleware:
    """Gives every request an id, answers with it in `X-Request-Id`, and makes it the
    correlation id of what the request changes (audit events and field-level change entries)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_for(request)
        token = _current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current_request_id.reset(token)
        response["X-Request-Id"] = request_id
        return response
