"""Errors of the /v1/ API, rendered once in the shape the client's SDK expects."""
import orjson
from django.http import HttpResponse

OPENAI_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
    502: "api_error", 503: "api_error", 504: "timeout_error",
}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    502: "api_error", 503: "overloaded_error", 504: "api_error",
}


class ProxyError(Exception):
    def __init__(self, status: int, message: str, *, code: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


class UntranslatableRequest(ProxyError):
    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(400, message, code="untranslatable_request", param=param)


def invalid_request(message: str, *, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, code="invalid_request", param=param)


def openai_error_body(error: ProxyError) -> dict:
    return {
        "error": {
            "message": error.message,
            "type": OPENAI_ERROR_TYPES.get(error.status, "api_error"),
            "param": error.param,
            "code": error.code,
        }
    }


def anthropic_error_body(error: ProxyError) -> dict:
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(error.status, "api_error"), "message": error.message}}


def error_response(error: ProxyError, *, anthropic: bool, request_id: str) -> HttpResponse:
    body = anthropic_error_body(error) if anthropic else openai_error_body(error)
    response = HttpResponse(orjson.dumps(body), status=error.status, content_type="application/json")
    response["x-request-id"] = request_id
    for name, value in error.headers.items():
        response[name] = value
    return response
