"""Calls to provider deployments: URL and headers per provider kind, one pooled HTTP session
per process, and an SSE reader for streamed answers."""
import requests
from requests.adapters import HTTPAdapter

from keys.models import ProviderKind
from proxy.routing import Route

ANTHROPIC_VERSION = "2023-06-01"
CONNECT_TIMEOUT_SECONDS = 5.0
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def _session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=64, pool_maxsize=2048, max_retries=0, pool_block=False)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # never route provider traffic through an ambient proxy setting
    return session


SESSION = _session()


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


def upstream_send(route: Route, endpoint: str, body: bytes, *, stream: bool, request_id: str) -> requests.Response:
    url, headers = upstream_url_and_headers(route, endpoint)
    headers["x-request-id"] = request_id
    return SESSION.post(
        url, data=body, headers=headers, stream=stream,
        timeout=(min(CONNECT_TIMEOUT_SECONDS, route.timeout_seconds), route.timeout_seconds),
        allow_redirects=False,
    )


def sse_events(response: requests.Response):
    """Yields (event type or None, data bytes) per server-sent event, as the bytes arrive."""
    buffer = b""
    for piece in response.iter_content(chunk_size=None):
        buffer += piece.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            raw, buffer = buffer[:end], buffer[end + 2:]
            event_type, data_lines = None, []
            for line in raw.split(b"\n"):
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip())
                elif line.startswith(b"event:"):
                    event_type = line[6:].strip().decode()
            if data_lines:
                yield event_type, b"\n".join(data_lines)
