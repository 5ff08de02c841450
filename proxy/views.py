"""The /v1/ endpoints: OpenAI chat completions, embeddings and models, and Anthropic messages.

Plain Django views, not DRF: this is the hot path. No database transaction is open while a
provider is being waited on: authentication and routing come from per-process caches (one
short transaction on a miss), then the call, then the metrics.
"""
import dataclasses
import time

import orjson
import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from audit.origin import client_ip, request_id_for
from guardrails.gateway import GuardrailBlocked, RequestGuard, request_guard_for
from proxy import metrics, translate
from proxy.auth import KeyGrant, hashed_secret_from_request, key_grant_for_hash, key_grant_guess
from proxy.cache import gateway_state_read
from proxy.compliance import RoutingDecision, compliant_routes, no_compliant_deployment, phi_changes_routing
from proxy.cooldown import cooldown_keys, cooling_from_flags, deployment_failure_record, deployments_cooling
from proxy.errors import ProxyError, UntranslatableRequest, anthropic_error_body, error_response, invalid_request, openai_error_body
from proxy.routing import OrgRouting, Route, org_routing, org_routing_guess, routes_in_attempt_order
from proxy.tokens import streamed_text_tokens
from proxy.upstream import (
    RETRYABLE_STATUSES,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
    sse_events,
    upstream_release,
    upstream_send,
)
from proxy.validation import chat_request_validate, embeddings_request_validate, messages_request_validate
from requestlogs.tracing import request_span_record
from requestlogs.writer import request_log_append
from spend.gate import Reservation, request_end_user, spend_prompt_tokens, spend_reserve, spend_settle
from spend.pricing import cost_microusd
from tenants.models import LoggingLevel

VALIDATORS = {"chat": chat_request_validate, "messages": messages_request_validate, "embeddings": embeddings_request_validate}
MAX_UPSTREAM_MESSAGE = 300
STREAMED_KEPT_MAX_BYTES = 64 * 1024


@dataclasses.dataclass
class Call:
    """One /v1/ request, filled in as it is authorized and forwarded."""

    request_id: str
    endpoint: str  # "chat", "messages" or "embeddings"
    anthropic_client: bool
    started: float
    client_ip: str | None
    body: dict = dataclasses.field(default_factory=dict)
    grant: KeyGrant | None = None
    routing: OrgRouting | None = None
    alias: str = ""
    stream: bool = False
    client_wants_usage: bool = False
    generation: int = 0
    end_user: str = ""
    reservation: Reservation | None = None  # held against budgets and rate limits until settled
    streamed: list[bytes] | None = None  # the provider's latest SSE data, counted when it sends no usage
    streamed_tokens: int = 0  # the text of earlier SSE data, already counted to bound memory
    cooling: set[str] = dataclasses.field(default_factory=set)
    logging_level: str = LoggingLevel.METADATA
    attempts: int = 0
    ttft_ms: int | None = None
    response_text: list[str] | None = None  # collected only when the logging level keeps text
    guard: RequestGuard | None = None
    routing_decision: RoutingDecision | None = None


@dataclasses.dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AttemptFailed(Exception):
    """This deployment failed in a way another deployment might not (retry, then fall back)."""

    def __init__(self, error: ProxyError):
        self.error = error


def _json_body(request) -> dict:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        raise invalid_request("Invalid Content-Length.")
    if int(length) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise ProxyError(413, f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
                         code="request_too_large")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise invalid_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return body


def _gateway_state(deployment_ids: list[str]) -> tuple[int, set[str]]:
    try:
        generation, flags = gateway_state_read(cooldown_keys(deployment_ids))
    except redis.RedisError:
        # Without the generation a revoked key could still pass: fail closed.
        raise ProxyError(503, "The gateway cannot reach Redis; try again shortly.", code="gateway_unavailable") from None
    return generation, cooling_from_flags(deployment_ids, flags)


def _chain_ids(routing: OrgRouting | None, alias: str) -> list[str]:
    chain = routing.aliases.get(alias, ()) if routing is not None else ()
    return [route.deployment_id for route in chain]


LOGGING_LEVEL_RANK = {LoggingLevel.METADATA: 0, LoggingLevel.REDACTED: 1, LoggingLevel.FULL: 2}


def _logging_level(request, call: Call) -> str:
    """The org's level, lowered (never raised) by the team, the key and the request header."""
    requested = request.META.get("HTTP_X_GATEHOUSE_LOG_LEVEL")
    if requested is not None and requested not in LOGGING_LEVEL_RANK:
        raise invalid_request("x-gatehouse-log-level must be one of metadata, redacted, full.", param="x-gatehouse-log-level")
    levels = (call.routing.logging_level, call.grant.team_logging_level, call.grant.key_logging_level, requested)
    return min((level for level in levels if level), key=LOGGING_LEVEL_RANK.__getitem__)


def _authorize(request, call: Call) -> None:
    hashed = hashed_secret_from_request(request)
    body = _json_body(request)
    VALIDATORS[call.endpoint](body)
    alias = body["model"]
    # One Redis round trip per request: the generation, plus the cooldown flags of the
    # deployments that the cached routing (of any generation) says this alias uses.
    guess = key_grant_guess(hashed)
    guessed_ids = _chain_ids(org_routing_guess(guess.org_id) if guess else None, alias)
    generation, cooling = _gateway_state(guessed_ids)
    call.generation = generation
    try:
        call.grant = key_grant_for_hash(hashed, generation=generation)
        call.routing = org_routing(call.grant.org_id, generation=generation)
        call.guard = request_guard_for(org_id=call.grant.org_id, team_id=call.grant.team_id, key_id=call.grant.key_id,
                                       handles_phi=call.grant.handles_phi, generation=generation)
    except DatabaseError:
        raise ProxyError(503, "The gateway cannot reach its database; try again shortly.", code="gateway_unavailable") from None
    call.body, call.alias = body, alias
    call.logging_level = _logging_level(request, call)
    if alias not in call.routing.aliases:
        raise ProxyError(404, f"The model '{alias}' does not exist.", code="model_not_found", param="model")
    if not call.grant.team_allows_alias(alias):
        raise ProxyError(403, f"The model '{alias}' is not in the approved catalogue of this key's team.",
                         code="model_not_allowed", param="model")
    if not call.grant.allows_alias(alias):
        raise ProxyError(403, f"This API key may not use the model '{alias}'.", code="model_not_allowed", param="model")
    call.guard.request_check(body, call.endpoint, phi_changes_routing=phi_changes_routing(call.routing.aliases[alias]))
    chain_ids = _chain_ids(call.routing, alias)
    call.cooling = cooling if chain_ids == guessed_ids else deployments_cooling(chain_ids)
    call.stream = bool(body.get("stream")) and call.endpoint != "embeddings"
    call.client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if call.logging_level != LoggingLevel.METADATA:
        call.response_text = []


def _serve(request, *, endpoint: str, anthropic_client: bool):
    call = Call(request_id=request_id_for(request), endpoint=endpoint, anthropic_client=anthropic_client,
                started=time.monotonic(), client_ip=client_ip(request))
    try:
        if request.method != "POST":
            raise ProxyError(405, "Use POST.", code="method_not_allowed")
        _authorize(request, call)
        call.end_user = request_end_user(request.META.get("HTTP_X_GATEHOUSE_END_USER"), call.body)
        return _forward(call)
    except ProxyError as error:
        if call.reservation is not None:
            spend_settle(call.reservation, route=None, prompt_tokens=0, completion_tokens=0, error_code=error.code)
        org = call.routing.org_slug if call.routing else ""
        metrics.ERRORS.labels(org, call.alias, error.code).inc()
        if call.routing is not None:
            request_log_record(call, None, error.status, Usage(), error_code=error.code)
        return error_response(error, anthropic=anthropic_client, request_id=call.request_id)


@csrf_exempt
def chat_completions(request):
    return _serve(request, endpoint="chat", anthropic_client=False)


@csrf_exempt
def anthropic_messages(request):
    return _serve(request, endpoint="messages", anthropic_client=True)


@csrf_exempt
def embeddings(request):
    return _serve(request, endpoint="embeddings", anthropic_client=False)


@csrf_exempt
def models(request):
    request_id = request_id_for(request)
    try:
        if request.method != "GET":
            raise ProxyError(405, "Use GET.", code="method_not_allowed")
        hashed = hashed_secret_from_request(request)
        generation, _ = _gateway_state([])
        try:
            grant = key_grant_for_hash(hashed, generation=generation)
            routing = org_routing(grant.org_id, generation=generation)
        except DatabaseError:
            raise ProxyError(503, "The gateway cannot reach its database.", code="gateway_unavailable") from None
    except ProxyError as error:
        return error_response(error, anthropic=False, request_id=request_id)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": routing.org_slug}
            for name in sorted(routing.aliases) if grant.allows_alias(name)]
    response = HttpResponse(orjson.dumps({"object": "list", "data": data}), content_type="application/json")
    response["x-request-id"] = request_id
    return response


# Forwarding -------------------------------------------------------------------------------

def _upstream_body(call: Call, route: Route) -> bytes:
    if call.endpoint == "embeddings":
        return orjson.dumps({**call.body, "model": route.upstream_model})
    if call.anthropic_client == route.speaks_anthropic:
        upstream = {**call.body, "model": route.upstream_model}
        if call.stream and not route.speaks_anthropic:
            upstream["stream_options"] = {**(call.body.get("stream_options") or {}), "include_usage": True}
        return orjson.dumps(upstream)
    if call.anthropic_client:
        return orjson.dumps(translate.anthropic_request_to_openai(call.body, upstream_model=route.upstream_model))
    upstream = translate.openai_request_to_anthropic(
        call.body, upstream_model=route.upstream_model,
        default_max_tokens=route.max_output_tokens or settings.GATEHOUSE_DEFAULT_MAX_TOKENS,
    )
    return orjson.dumps(upstream)


def _upstream_error_message(response: UpstreamResponse) -> str:
    try:
        payload = orjson.loads(response.data)
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return (message or response.reason or "no details")[:MAX_UPSTREAM_MESSAGE]


def _refusal_for_status(response: UpstreamResponse, route: Route) -> ProxyError:
    """Maps a non-200 upstream answer; raises AttemptFailed for the ones worth retrying elsewhere."""
    status = response.status
    if status in RETRYABLE_STATUSES:
        if status == 429:
            retry_after = response.headers.get("retry-after", "1")
            raise AttemptFailed(ProxyError(429, "The provider is rate limiting this model; retry later.",
                                           code="upstream_rate_limited", headers={"Retry-After": retry_after}))
        raise AttemptFailed(ProxyError(502, f"The provider answered {status} for deployment '{route.deployment_name}'.",
                                       code="upstream_error"))
    if status in (401, 403):
        return ProxyError(502, f"The provider refused the gateway's credential for deployment '{route.deployment_name}'; "
                               "an admin must fix the provider credential.", code="upstream_auth_failed")
    if status == 413:
        return ProxyError(413, "The provider says the request is too large.", code="request_too_large")
    if status == 404:
        return ProxyError(502, f"The provider does not know the model of deployment '{route.deployment_name}'.",
                          code="upstream_model_not_found")
    return ProxyError(400, f"The provider rejected the request: {_upstream_error_message(response)}", code="upstream_rejected")


def _attempt(call: Call, route: Route, body: bytes):
    call.attempts += 1
    try:
        response = upstream_send(route, call.endpoint, body, stream=call.stream, request_id=call.request_id)
    except UpstreamRefused:
        raise AttemptFailed(ProxyError(502, f"Could not connect to deployment '{route.deployment_name}'.",
                                       code="upstream_unreachable")) from None
    except UpstreamTimeout:
        raise AttemptFailed(ProxyError(504, f"Deployment '{route.deployment_name}' timed out.", code="upstream_timeout")) from None
    except UpstreamUnreachable:
        raise AttemptFailed(ProxyError(502, f"Could not reach deployment '{route.deployment_name}'.",
                                       code="upstream_unreachable")) from None
    if response.status != 200:
        try:
            raise _refusal_for_status(response, route)  # AttemptFailed when worth retrying
        finally:
            upstream_release(response, finished=False)
    if call.stream:
        return _stream_start(call, route, response)
    return _complete(call, route, response)


def _forward(call: Call):
    chain = call.routing.aliases[call.alias]
    candidates = routes_in_attempt_order(chain)
    if call.endpoint == "embeddings":
        candidates = [route for route in candidates if not route.speaks_anthropic]
        if not candidates:
            raise invalid_request(f"The model '{call.alias}' does not offer embeddings.", param="model")
    candidates, call.routing_decision = compliant_routes(candidates, phi=call.guard.phi, data_region=call.routing.data_region)
    if not candidates:
        raise no_compliant_deployment(call.alias, call.routing_decision)
    ready = [route for route in candidates if route.deployment_id not in call.cooling]
    if not ready:
        raise ProxyError(503, f"Every deployment of '{call.alias}' is cooling down after failures; retry shortly.",
                         code="deployments_cooling_down", headers={"Retry-After": str(settings.GATEHOUSE_COOLDOWN_SECONDS)})
    # Reserved before the first attempt, so that concurrent requests cannot overspend a budget.
    call.reservation = spend_reserve(
        grant=call.grant, generation=call.generation, request_id=call.request_id, endpoint=call.endpoint,
        alias=call.alias, body=call.body, end_user=call.end_user, candidates=ready, anthropic_client=call.anthropic_client)
    last_failure: ProxyError | None = None
    for route in ready:
        try:
            body = _upstream_body(call, route)
        except UntranslatableRequest as error:
            last_failure = last_failure or error
            continue
        for retry in range(settings.GATEHOUSE_RETRIES_PER_DEPLOYMENT + 1):
            try:
                return _attempt(call, route, body)
            except AttemptFailed as failure:
                last_failure = failure.error
                if deployment_failure_record(route.deployment_id):
                    break
                if retry < settings.GATEHOUSE_RETRIES_PER_DEPLOYMENT:
                    time.sleep(settings.GATEHOUSE_RETRY_BACKOFF_SECONDS * (2 ** retry))
    raise last_failure


def _cost(route: Route, usage: Usage, endpoint: str) -> float:
    # The same rounded micro-dollars as the spend ledger and the budget counters.
    return cost_microusd(route, endpoint, usage.prompt_tokens, usage.completion_tokens) / 1e6


def _usage_settle(call: Call, route: Route, usage: Usage, error_code: str) -> None:
    """Charges the request's budgets; a stream cut before its usage is charged for the prompt and the text streamed."""
    if call.stream and not usage.completion_tokens and call.streamed is not None:
        usage.completion_tokens = call.streamed_tokens + streamed_text_tokens(call.streamed, anthropic=route.speaks_anthropic)
    if not usage.prompt_tokens:  # the provider sent no usage: the gateway's own count stands in
        usage.prompt_tokens = spend_prompt_tokens(call.reservation, call.body)
    spend_settle(call.reservation, route=route, prompt_tokens=usage.prompt_tokens,
                 completion_tokens=usage.completion_tokens, error_code=error_code)


def _observe(call: Call, route: Route, status: int, usage: Usage, *, error_code: str = "") -> None:
    if call.reservation is not None:
        _usage_settle(call, route, usage, error_code)
    cost_usd = _cost(route, usage, call.endpoint)
    metrics.request_observe(
        org=call.routing.org_slug, alias=call.alias, deployment=route.deployment_name, status=status,
        started=call.started, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        cost_usd=cost_usd,
    )
    request_log_record(call, route, status, usage, error_code=error_code, cost_usd=cost_usd)


def _request_text(call: Call) -> str:
    if call.endpoint == "embeddings":
        value = call.body.get("input")
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    prompt = {"messages": call.body.get("messages")}
    if call.body.get("system"):
        prompt["system"] = call.body["system"]
    return orjson.dumps(prompt).decode()


def request_log_record(
    call: Call, route: Route | None, status: int, usage: Usage, *, error_code: str = "", cost_usd: float = 0.0
) -> None:
    """Hands the row to the per-process buffer: no I/O on the request path."""
    keeps_text = call.response_text is not None
    body = call.body
    end_user = call.end_user or body.get("user") or (body.get("metadata") or {}).get("user_id")
    row = {
        "org_id": call.grant.org_id,
        "created_at": timezone.now(),
        "request_id": call.request_id,
        "team_id": call.grant.team_id,
        "key_id": call.grant.key_id,
        "key_last_four": call.grant.last_four,
        "end_user": str(end_user or "")[:256],
        "client_ip": call.client_ip,
        "endpoint": call.endpoint,
        "alias": call.alias[:200],
        "deployment": route.deployment_name if route else "",
        "upstream_model": route.upstream_model if route else "",
        "provider_kind": route.provider_kind if route else "",
        "status": status,
        "error_code": error_code,
        "stream": call.stream,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost_usd": cost_usd,
        "latency_ms": int((time.monotonic() - call.started) * 1000),
        "ttft_ms": call.ttft_ms,
        "attempts": call.attempts,
        "guardrail": call.guard.log_record() if call.guard else {},
        "routing": call.routing_decision.record(cooling=call.cooling, chosen=route) if call.routing_decision else {},
        "logging_level": call.logging_level,
        "request_text": _request_text(call) if keeps_text and body else None,
        "response_text": "".join(call.response_text) if keeps_text else None,
    }
    request_log_append(row)
    request_span_record(row, duration_seconds=time.monotonic() - call.started)


def _served_headers(response, call: Call, route: Route):
    response["x-request-id"] = call.request_id
    response["x-gatehouse-model-alias"] = call.alias
    response["x-gatehouse-deployment"] = route.deployment_name
    response["x-gatehouse-attempts"] = str(call.attempts)
    return response


def _complete(call: Call, route: Route, response: UpstreamResponse) -> HttpResponse:
    raw = response.data
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AttemptFailed(ProxyError(502, f"Deployment '{route.deployment_name}' sent a malformed answer.",
                                       code="upstream_malformed")) from None
    if not isinstance(payload, dict):
        raise AttemptFailed(ProxyError(502, f"Deployment '{route.deployment_name}' sent a malformed answer.",
                                       code="upstream_malformed"))
    blocked = None
    if call.endpoint != "embeddings":
        try:
            if call.guard.response_check(payload, anthropic=route.speaks_anthropic):
                raw = orjson.dumps(payload)
        except GuardrailBlocked as error:
            blocked = error.as_proxy_error()
    usage_block = payload.get("usage") or {}
    if route.speaks_anthropic:
        usage = Usage(usage_block.get("input_tokens", 0), usage_block.get("output_tokens", 0))
        if call.response_text is not None:
            call.response_text.extend(b.get("text", "") for b in payload.get("content") or [] if b.get("type") == "text")
    else:
        usage = Usage(usage_block.get("prompt_tokens", 0), usage_block.get("completion_tokens", 0))
        if call.response_text is not None and call.endpoint != "embeddings":
            message = ((payload.get("choices") or [{}])[0] or {}).get("message") or {}
            call.response_text.append(message.get("content") or "")
    if blocked is not None:
        if call.response_text is not None:
            call.response_text.clear()  # the withheld answer is not logged either
        metrics.ERRORS.labels(call.routing.org_slug, call.alias, blocked.code).inc()
        _observe(call, route, blocked.status, usage, error_code=blocked.code)
        return _served_headers(error_response(blocked, anthropic=call.anthropic_client, request_id=call.request_id),
                               call, route)
    if call.endpoint != "embeddings" and call.anthropic_client != route.speaks_anthropic:
        if call.anthropic_client:
            raw = orjson.dumps(translate.openai_response_to_anthropic(payload, model=call.alias))
        else:
            raw = orjson.dumps(translate.anthropic_response_to_openai(payload, model=call.alias))
    _observe(call, route, 200, usage)
    return _served_headers(HttpResponse(raw, content_type="application/json"), call, route)


# Streaming --------------------------------------------------------------------------------

class StreamCut(Exception):
    """The provider's stream failed after the first byte reached the client."""


def _stream_start(call: Call, route: Route, response: UpstreamResponse) -> StreamingHttpResponse:
    """Reads the first event before answering, so that a failure up to here can still fall back."""
    events = sse_events(response)
    try:
        first = next(events)
        first_payload = None if first[1] == b"[DONE]" else orjson.loads(first[1])
    except (StopIteration, UpstreamUnreachable, orjson.JSONDecodeError):
        upstream_release(response, finished=False)
        raise AttemptFailed(ProxyError(502, f"Deployment '{route.deployment_name}' broke off its stream before the first event.",
                                       code="upstream_stream_failed")) from None
    upstream_error = first[0] == "error" if route.speaks_anthropic else isinstance(first_payload, dict) and "error" in first_payload
    if upstream_error:
        upstream_release(response, finished=False)
        raise AttemptFailed(ProxyError(502, f"Deployment '{route.deployment_name}' reported an error.", code="upstream_error"))
    first_token_seconds = time.monotonic() - call.started
    call.ttft_ms = int(first_token_seconds * 1000)
    metrics.TIME_TO_FIRST_TOKEN.labels(call.routing.org_slug, call.alias, route.deployment_name).observe(first_token_seconds)
    streaming = StreamingHttpResponse(
        _relay(call, route, response, first, first_payload, events), content_type="text/event-stream"
    )
    streaming["cache-control"] = "no-cache"
    streaming["x-accel-buffering"] = "no"
    return _served_headers(streaming, call, route)


def _openai_sse(payload) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _anthropic_sse(event_type: str, payload) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _stream_error_event(call: Call, route: Route) -> bytes:
    error = ProxyError(502, f"The stream from deployment '{route.deployment_name}' was cut off.", code="upstream_stream_cut")
    if call.anthropic_client:
        return _anthropic_sse("error", anthropic_error_body(error))
    return _openai_sse(openai_error_body(error))


def _relay(call: Call, route: Route, response: UpstreamResponse, first, first_payload, events):
    """Yields the client's SSE bytes; closes the upstream call however the stream ends,
    including when the client goes away (the generator is closed)."""
    usage = Usage()
    status, error_code = 200, ""
    finished = False
    events = _streamed_kept(call, route, first, events)
    if route.speaks_anthropic:
        relay = _relay_anthropic_upstream(call, usage, first, first_payload, events)
    else:
        relay = _relay_openai_upstream(call, usage, first, first_payload, events)
    try:
        yield from relay
        finished = True
    except (StreamCut, UpstreamUnreachable, orjson.JSONDecodeError):
        status, error_code = 502, "upstream_stream_cut"
        metrics.ERRORS.labels(call.routing.org_slug, call.alias, "upstream_stream_cut").inc()
        yield _stream_error_event(call, route)
    except GuardrailBlocked as blocked:
        error = blocked.as_proxy_error()
        status, error_code = error.status, error.code
        metrics.ERRORS.labels(call.routing.org_slug, call.alias, error.code).inc()
        yield _anthropic_sse("error", anthropic_error_body(error)) if call.anthropic_client else _openai_sse(openai_error_body(error))
    except GeneratorExit:
        status, error_code = 499, "client_disconnected"  # closing the upstream response cancels the provider call
        raise
    finally:
        upstream_release(response, finished=finished)
        _observe(call, route, status, usage, error_code=error_code)


def _streamed_kept(call: Call, route: Route, first, events):
    """Keeps what the provider streamed (held-back text included): a cut stream is charged for all of it.
    Past STREAMED_KEPT_MAX_BYTES the kept events are counted and dropped, so a long stream stays small."""
    call.streamed, kept_bytes = [first[1]], len(first[1])
    for event in events:
        call.streamed.append(event[1])
        kept_bytes += len(event[1])
        if kept_bytes > STREAMED_KEPT_MAX_BYTES:
            call.streamed_tokens += streamed_text_tokens(call.streamed, anthropic=route.speaks_anthropic)
            call.streamed, kept_bytes = [], 0
        yield event


def _may_carry_usage_or_error(data: bytes) -> bool:
    # Parsing every chunk costs CPU; only chunks that can hold a usage block or an error need it.
    if b'"error"' in data:
        return True
    return b'"usage"' in data and b'"usage":null' not in data and b'"usage": null' not in data


def _relay_openai_upstream(call: Call, usage: Usage, first, first_payload, events):
    to_anthropic = translate.OpenAIStreamToAnthropic(model=call.alias) if call.anthropic_client else None
    scanner = call.guard.stream_scanner()
    pending = [(first[1], first_payload)]
    while True:
        for data, payload in pending:
            if data == b"[DONE]" and scanner is not None and (rest := scanner.openai_rest_chunk()) is not None:
                if call.response_text is not None:
                    call.response_text.extend(choice["delta"]["content"] for choice in rest["choices"])
                if to_anthropic:
                    for event_type, event in to_anthropic.feed(rest):
                        yield _anthropic_sse(event_type, event)
                else:
                    yield _openai_sse(rest)
            if data == b"[DONE]":
                if to_anthropic:
                    for event_type, event in to_anthropic.finish():
                        yield _anthropic_sse(event_type, event)
                else:
                    yield b"data: [DONE]\n\n"
                return
            if payload is None:
                needs_parsing = (to_anthropic or scanner or call.response_text is not None
                                 or _may_carry_usage_or_error(data))
                payload = orjson.loads(data) if needs_parsing else None
            if payload is not None:
                if "error" in payload:
                    raise StreamCut()
                if scanner is not None:
                    scanner.openai_chunk(payload)  # before translation, so every direction is scanned once
                    data = orjson.dumps(payload)
                if payload.get("usage"):
                    usage.prompt_tokens = payload["usage"].get("prompt_tokens", 0)
                    usage.completion_tokens = payload["usage"].get("completion_tokens", 0)
                if call.response_text is not None:
                    for choice in payload.get("choices") or []:
                        call.response_text.append((choice.get("delta") or {}).get("content") or "")
                if to_anthropic:
                    for event_type, event in to_anthropic.feed(payload):
                        yield _anthropic_sse(event_type, event)
                    continue
                if payload.get("usage") and not payload.get("choices") and not call.client_wants_usage:
                    continue  # the usage chunk the gateway asked for on its own account
            yield b"data: " + data + b"\n\n"
        try:
            event_type, data = next(events)
        except StopIteration:
            raise StreamCut() from None
        pending = [(data, None)]


def _relay_anthropic_upstream(call: Call, usage: Usage, first, first_payload, events):
    to_openai = None if call.anthropic_client else translate.AnthropicStreamToOpenAI(
        model=call.alias, include_usage=call.client_wants_usage)
    scanner = call.guard.stream_scanner()
    event_type, data, payload = first[0], first[1], first_payload
    while True:
        if event_type == "error":
            raise StreamCut()
        if payload is None and (to_openai or scanner or call.response_text is not None
                                or event_type in ("message_start", "message_delta")):
            payload = orjson.loads(data)
        if scanner is not None:  # before translation, so every direction is scanned once
            for held_type, held in scanner.anthropic_event(event_type or "", payload):
                if call.response_text is not None:
                    call.response_text.append(held["delta"]["text"])
                if to_openai:
                    for chunk in to_openai.feed(held_type, held):
                        yield _openai_sse(chunk)
                else:
                    yield _anthropic_sse(held_type, held)
            data = orjson.dumps(payload)
        if call.response_text is not None and event_type == "content_block_delta":
            call.response_text.append((payload.get("delta") or {}).get("text", ""))
        if event_type == "message_start":
            usage.prompt_tokens = ((payload.get("message") or {}).get("usage") or {}).get("input_tokens", 0)
        elif event_type == "message_delta":
            usage.completion_tokens = (payload.get("usage") or {}).get("output_tokens", 0)
        if to_openai:
            for chunk in to_openai.feed(event_type or "", payload):
                yield _openai_sse(chunk)
            if event_type == "message_stop":
                yield b"data: [DONE]\n\n"
        else:
            yield b"event: " + (event_type or "message").encode() + b"\ndata: " + data + b"\n\n"
        if event_type == "message_stop":
            return
        try:
            event_type, data = next(events)
        except StopIteration:
            raise StreamCut() from None
        payload = None
