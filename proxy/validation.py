"""Shape checks of /v1/ request bodies, before anything is sent upstream."""
from django.conf import settings

from proxy.errors import invalid_request

MAX_MODEL_NAME = 200


def _int_in_range(body: dict, field: str, low: int, high: int, *, required: bool = False) -> None:
    value = body.get(field)
    if value is None:
        if required:
            raise invalid_request(f"'{field}' is required.", param=field)
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_request(f"'{field}' must be an integer.", param=field)
    if not low <= value <= high:
        raise invalid_request(f"'{field}' must be between {low} and {high}.", param=field)


def _number_in_range(body: dict, field: str, low: float, high: float) -> None:
    value = body.get(field)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_request(f"'{field}' must be a number.", param=field)
    if not low <= value <= high:
        raise invalid_request(f"'{field}' must be between {low} and {high}.", param=field)


def _model(body: dict) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("'model' is required and must be a string.", param="model")
    if len(model) > MAX_MODEL_NAME:
        raise invalid_request(f"'model' is longer than {MAX_MODEL_NAME} characters.", param="model")


def _messages(body: dict) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid_request("Each message must be an object with a 'role'.", param=f"messages[{index}]")


def _flag(body: dict, field: str) -> None:
    if field in body and not isinstance(body[field], bool):
        raise invalid_request(f"'{field}' must be a boolean.", param=field)


def _optional_list(body: dict, field: str) -> None:
    if body.get(field) is not None and not isinstance(body[field], list):
        raise invalid_request(f"'{field}' must be an array.", param=field)


def chat_request_validate(body: dict) -> None:
    _model(body)
    _messages(body)
    _flag(body, "stream")
    _int_in_range(body, "n", 1, 128)
    _int_in_range(body, "max_tokens", 1, settings.GATEHOUSE_MAX_OUTPUT_TOKENS)
    _int_in_range(body, "max_completion_tokens", 1, settings.GATEHOUSE_MAX_OUTPUT_TOKENS)
    _number_in_range(body, "temperature", 0, 2)
    _number_in_range(body, "top_p", 0, 1)
    _optional_list(body, "tools")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise invalid_request("'stream_options' must be an object.", param="stream_options")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, (str, list)):
        raise invalid_request("'stop' must be a string or an array of strings.", param="stop")


def messages_request_validate(body: dict) -> None:
    _model(body)
    _messages(body)
    _flag(body, "stream")
    _int_in_range(body, "max_tokens", 1, settings.GATEHOUSE_MAX_OUTPUT_TOKENS, required=True)
    _number_in_range(body, "temperature", 0, 1)
    _number_in_range(body, "top_p", 0, 1)
    _optional_list(body, "tools")
    _optional_list(body, "stop_sequences")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise invalid_request("'system' must be a string or an array of text blocks.", param="system")


def embeddings_request_validate(body: dict) -> None:
    _model(body)
    value = body.get("input")
    if isinstance(value, str):
        valid = bool(value)
    elif isinstance(value, list) and value:
        valid = all(isinstance(item, str) and item for item in value) or all(
            isinstance(item, int) and not isinstance(item, bool) for item in value
        ) or all(isinstance(item, list) and item for item in value)
    else:
        valid = False
    if not valid:
        raise invalid_request("'input' must be a non-empty string or a non-empty array of them.", param="input")
    _int_in_range(body, "dimensions", 1, 65536)
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise invalid_request("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
