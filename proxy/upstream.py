"""Calls to provider deployments: URL and headers per provider kind, one connection pool per
process, and an SSE reader for streamed answers.

urllib3 (the transport under `requests`) is used directly: on the hot path, requests'
per-call session merging and request preparation cost more CPU than the call itself.
"""
import urllib3

from keys.models import ProviderKind
from proxy.routing import Route

ANTHROPIC_VERSION = "2023-06-01"
CONNECT_TIMEOUT_SECONDS = 5.0
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# NewConnectionError (a refused connection) subclasses ConnectTimeoutError in urllib3 2: test it first.
UpstreamRefused = urllib3.exceptions.NewConnectionError
UpstreamTimeout = urllib3.exceptions.TimeoutError
UpstreamUnreachable = urllib3.exceptions.HTTPError
UpstreamResponse = urllib3.BaseHTTPResponse

# Never follows redirects nor retries on its own: retries and fallbacks are the proxy's decision.
POOL = urllib3.PoolManager(num_pools=256, maxsize=4096, block=False, retries=False)


def upstream_url_and_headers(route: Route, endpoint: str) -> tuple[str, dict]:
    """endpoint: "chat", "embeddings" or "messages"."""
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if route.provider_kind == ProviderKind.ANTHROPIC:
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if route.api_key:
            headers["x-api-key"] = route.api_key
        return f"{route.base_url}/v1/messages", headers
    path = "embeddings" if endpoint == "embeddings" else "chat/completions"
    if route.provider_kind == ProviderKind.AZURE_OPENAI:
        if route.api_key:
            headers["api-key"] = route.api_key
        return f"{route.base_url}/openai/deployments/{route.upstream_model}/{path}?api-version={route.api_version}", headers
    if route.api_key:
        headers["authorization"] = f"Bearer {route.api_key}"
    return f"{route.base_url}/{path}", headers


def upstream_send(route: Route, endpoint: str, body: bytes, *, stream: bool, request_id: str) -> UpstreamResponse:
    url, headers = upstream_url_and_headers(route, endpoint)
    headers["x-request-id"] = request_id
    return POOL.urlopen(
        "POST", url, body=body, headers=headers, redirect=False, retries=False, preload_content=not stream,
        timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT_SECONDS, route.timeout_seconds), read=route.timeout_seconds),
    )


def _body_pieces(response: UpstreamResponse):
    if response.chunked:
        yield from response.read_chunked()
        return
    while piece := response.read1(65536):
        yield piece


def _sse_event(raw: bytes) -> tuple[str | None, bytes] | None:
    if raw.startswith(b"data: ") and b"\n" not in raw:  # the usual shape: one data line
        return None, raw[6:]
    event_type, data_lines = None, []
    for line in raw.split(b"\n"):
        if line.startswith(b"data:"):
            data_lines.append(line[5:].lstrip())
        elif line.startswith(b"event:"):
            event_type = line[6:].strip().decode()
    return (event_type, b"\n".join(data_lines)) if data_lines else None


def sse_events(response: UpstreamResponse):
    """Yields (event type or None, data bytes) per server-sent event, as the bytes arrive."""
    buffer = b""
    for piece in _body_pieces(response):
        if b"\r" in piece:
            piece = piece.replace(b"\r\n", b"\n")
        buffer += piece
        if b"\n\n" not in buffer:
            continue
        *complete, buffer = buffer.split(b"\n\n")
        for raw in complete:
            event = _sse_event(raw)
            if event is not None:
                yield event


def upstream_release(response: UpstreamResponse, *, finished: bool) -> None:
    """A finished answer's connection goes back to the pool; an unfinished one is closed,
    which is what stops the provider working on an answer nobody will read."""
    if finished:
        response.drain_conn()
        response.release_conn()
    else:
        response.close()
