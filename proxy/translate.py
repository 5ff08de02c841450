"""Translation between the OpenAI chat format and the Anthropic messages format.

Requests, responses and streams in both directions, carrying system prompts, tool
definitions, tool calls and tool results. Anything without a faithful counterpart is
refused with UntranslatableRequest (400) rather than silently dropped.
"""
import time
import uuid

import orjson

from proxy.errors import UntranslatableRequest, invalid_request

OPENAI_TO_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "end_turn",
                            "function_call": "tool_use"}
ANTHROPIC_TO_OPENAI_STOP = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls", "stop_sequence": "stop",
                            "pause_turn": "stop", "refusal": "content_filter"}
OPENAI_ONLY_FIELDS = ("logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed",
                      "audio", "modalities", "prediction")


def _text_of(content, *, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise UntranslatableRequest("Only text content can be carried here.", param=param)
            texts.append(part["text"])
        return "\n".join(texts)
    if content is None:
        return ""
    raise invalid_request("Message content must be a string or a list of content parts.", param=param)


def _data_url_parts(url: str, *, param: str) -> tuple[str, str]:
    header, _, data = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64") or not data:
        raise UntranslatableRequest("Images must be base64 data URLs or http(s) URLs.", param=param)
    return header[5:-7], data


# OpenAI -> Anthropic ----------------------------------------------------------------------

def _openai_user_blocks(content, *, param: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise invalid_request("Message content must be a string or a list of content parts.", param=param)
    blocks = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith(("http://", "https://")):
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
            else:
                media_type, data = _data_url_parts(url, param=f"{param}[{index}]")
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        else:
            raise UntranslatableRequest(f"Content part type {kind!r} cannot be sent to this model.", param=f"{param}[{index}]")
    return blocks


def _openai_tool_choice_to_anthropic(choice):
    if choice in (None, "auto"):
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    raise invalid_request("Unsupported tool_choice.", param="tool_choice")


def openai_request_to_anthropic(body: dict, *, upstream_model: str, default_max_tokens: int) -> dict:
    for field in OPENAI_ONLY_FIELDS:
        if body.get(field) not in (None, False):
            raise UntranslatableRequest(f"'{field}' has no counterpart at this model's provider.", param=field)
    if body.get("n", 1) != 1:
        raise UntranslatableRequest("'n' greater than 1 cannot be sent to this model.", param="n")
    response_format = body.get("response_format")
    if response_format and response_format.get("type") != "text":
        raise UntranslatableRequest("'response_format' cannot be sent to this model.", param="response_format")

    system_parts: list[str] = []
    messages: list[dict] = []

    def append(role: str, blocks: list[dict]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for index, message in enumerate(body["messages"]):
        param = f"messages[{index}]"
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system_parts.append(_text_of(content, param=f"{param}.content"))
        elif role == "user":
            append("user", _openai_user_blocks(content, param=f"{param}.content"))
        elif role == "assistant":
            blocks = []
            text = _text_of(content, param=f"{param}.content")
            if text:
                blocks.append({"type": "text", "text": text})
            for call_index, call in enumerate(message.get("tool_calls") or []):
                function = call.get("function") or {}
                try:
                    arguments = orjson.loads(function.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    raise invalid_request("Tool call arguments must be JSON.", param=f"{param}.tool_calls[{call_index}]") from None
                blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""), "input": arguments})
            if blocks:
                append("assistant", blocks)
        elif role == "tool":
            append("user", [{
                "type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                "content": _text_of(content, param=f"{param}.content"),
            }])
        else:
            raise invalid_request(f"Unknown message role {role!r}.", param=f"{param}.role")
    if not messages:
        raise invalid_request("At least one non-system message is needed.", param="messages")

    request = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens,
    }
    if system_parts:
        request["system"] = "\n\n".join(system_parts)
    for field in ("temperature", "top_p", "stream"):
        if body.get(field) is not None:
            request[field] = body[field]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        tools = []
        for index, tool in enumerate(body["tools"]):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise UntranslatableRequest("Only function tools can be sent to this model.", param=f"tools[{index}]")
            function = tool.get("function") or {}
            tools.append({
                "name": function.get("name", ""),
                "description": function.get("description", ""),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            })
        request["tools"] = tools
        request["tool_choice"] = _openai_tool_choice_to_anthropic(body.get("tool_choice"))
    if body.get("user"):
        request["metadata"] = {"user_id": str(body["user"])}
    return request


def anthropic_response_to_openai(message: dict, *, model: str) -> dict:
    text_parts, tool_calls = [], []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            text_parts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append({
                "id": block.get("id", ""), "type": "function",
                "function": {"name": block.get("name", ""), "arguments": orjson.dumps(block.get("input", {})).decode()},
            })
    reply = {"role": "assistant", "content": "".join(text_parts) if text_parts or not tool_calls else None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    usage = message.get("usage") or {}
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {
        "id": f"chatcmpl-{message.get('id', uuid.uuid4().hex)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": reply, "finish_reason": ANTHROPIC_TO_OPENAI_STOP.get(message.get("stop_reason"), "stop")}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


class AnthropicStreamToOpenAI:
    """Feeds Anthropic SSE events, yields OpenAI chat.completion.chunk objects."""

    def __init__(self, *, model: str, include_usage: bool):
        self.model = model
        self.include_usage = include_usage
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.tool_indexes: dict[int, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    def _chunk(self, delta: dict, finish_reason=None) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    def feed(self, event_type: str, data: dict) -> list[dict]:
        if event_type == "message_start":
            self.prompt_tokens = ((data.get("message") or {}).get("usage") or {}).get("input_tokens", 0)
            return [self._chunk({"role": "assistant", "content": ""})]
        if event_type == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                tool_index = len(self.tool_indexes)
                self.tool_indexes[data.get("index", 0)] = tool_index
                call = {"index": tool_index, "id": block.get("id", ""), "type": "function",
                        "function": {"name": block.get("name", ""), "arguments": ""}}
                return [self._chunk({"tool_calls": [call]})]
            return []
        if event_type == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                tool_index = self.tool_indexes.get(data.get("index", 0), 0)
                return [self._chunk({"tool_calls": [{"index": tool_index, "function": {"arguments": delta.get("partial_json", "")}}]})]
            return []
        if event_type == "message_delta":
            self.completion_tokens = (data.get("usage") or {}).get("output_tokens", self.completion_tokens)
            self.finish_reason = ANTHROPIC_TO_OPENAI_STOP.get((data.get("delta") or {}).get("stop_reason"), "stop")
            return [self._chunk({}, self.finish_reason)]
        if event_type == "message_stop" and self.include_usage:
            return [{"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "choices": [], "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                              "total_tokens": self.prompt_tokens + self.completion_tokens}}]
        return []


# Anthropic -> OpenAI ----------------------------------------------------------------------

def _anthropic_blocks(content, *, param: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(block, dict) for block in content):
        return content
    raise invalid_request("Message content must be a string or a list of content blocks.", param=param)


def _anthropic_tool_choice_to_openai(choice):
    kind = (choice or {}).get("type", "auto")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    raise invalid_request("Unsupported tool_choice.", param="tool_choice")


def anthropic_request_to_openai(body: dict, *, upstream_model: str) -> dict:
    if body.get("top_k") is not None:
        raise UntranslatableRequest("'top_k' has no counterpart at this model's provider.", param="top_k")
    if body.get("thinking"):
        raise UntranslatableRequest("'thinking' cannot be sent to this model.", param="thinking")
    messages: list[dict] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system, param="system")})
    for index, message in enumerate(body["messages"]):
        param = f"messages[{index}]"
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise invalid_request(f"Unknown message role {role!r}.", param=f"{param}.role")
        parts, tool_calls = [], []
        for block_index, block in enumerate(_anthropic_blocks(message.get("content"), param=f"{param}.content")):
            kind = block.get("type")
            block_param = f"{param}.content[{block_index}]"
            if kind == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif kind == "image" and role == "user":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    url = f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
                elif source.get("type") == "url":
                    url = source.get("url", "")
                else:
                    raise UntranslatableRequest("This image source cannot be sent to this model.", param=block_param)
                parts.append({"type": "image_url", "image_url": {"url": url}})
            elif kind == "tool_use" and role == "assistant":
                tool_calls.append({"id": block.get("id", ""), "type": "function", "function": {
                    "name": block.get("name", ""), "arguments": orjson.dumps(block.get("input", {})).decode()}})
            elif kind == "tool_result" and role == "user":
                messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""),
                                 "content": _text_of(block.get("content"), param=f"{block_param}.content")})
            else:
                raise UntranslatableRequest(f"Content block type {kind!r} cannot be sent to this model.", param=block_param)
        if role == "assistant":
            if parts or tool_calls:
                reply = {"role": "assistant", "content": "".join(part["text"] for part in parts) or None}
                if tool_calls:
                    reply["tool_calls"] = tool_calls
                messages.append(reply)
        elif parts:
            only_text = all(part["type"] == "text" for part in parts)
            messages.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts})

    request = {"model": upstream_model, "messages": messages, "max_tokens": body["max_tokens"]}
    for field in ("temperature", "top_p", "stream"):
        if body.get(field) is not None:
            request[field] = body[field]
    if body.get("stop_sequences"):
        request["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        request["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        request["tools"] = [
            {"type": "function", "function": {
                "name": tool.get("name", ""), "description": tool.get("description", ""),
                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}}
            for tool in body["tools"]
        ]
        request["tool_choice"] = _anthropic_tool_choice_to_openai(body.get("tool_choice"))
    user_id = (body.get("metadata") or {}).get("user_id")
    if user_id:
        request["user"] = str(user_id)
    return request


def openai_response_to_anthropic(completion: dict, *, model: str) -> dict:
    choices = completion.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {"_raw": function.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""), "input": arguments})
    usage = completion.get("usage") or {}
    return {
        "id": f"msg_{completion.get('id', uuid.uuid4().hex)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": OPENAI_TO_ANTHROPIC_STOP.get(choices[0].get("finish_reason"), "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)},
    }


class OpenAIStreamToAnthropic:
    """Feeds OpenAI chat.completion.chunk objects, yields (event type, data) Anthropic SSE events."""

    def __init__(self, *, model: str):
        self.model = model
        self.started = False
        self.block_index = -1
        self.open_block: str | None = None  # "text" or "tool:<openai index>"
        self.stop_reason = "end_turn"
        self.input_tokens = 0
        self.output_tokens = 0

    def _start(self) -> list[tuple[str, dict]]:
        self.started = True
        message = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _close_block(self) -> list[tuple[str, dict]]:
        if self.open_block is None:
            return []
        self.open_block = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.block_index})]

    def _open(self, name: str, block: dict) -> list[tuple[str, dict]]:
        events = self._close_block()
        self.block_index += 1
        self.open_block = name
        events.append(("content_block_start", {"type": "content_block_start", "index": self.block_index, "content_block": block}))
        return events

    def feed(self, chunk: dict) -> list[tuple[str, dict]]:
        events = [] if self.started else self._start()
        if chunk.get("usage"):
            self.input_tokens = chunk["usage"].get("prompt_tokens", self.input_tokens)
            self.output_tokens = chunk["usage"].get("completion_tokens", self.output_tokens)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.open_block != "text":
                    events += self._open("text", {"type": "text", "text": ""})
                events.append(("content_block_delta", {"type": "content_block_delta", "index": self.block_index,
                                                       "delta": {"type": "text_delta", "text": delta["content"]}}))
            for call in delta.get("tool_calls") or []:
                name = f"tool:{call.get('index', 0)}"
                function = call.get("function") or {}
                if self.open_block != name:
                    events += self._open(name, {"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex}",
                                                "name": function.get("name", ""), "input": {}})
                if function.get("arguments"):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": self.block_index,
                                                           "delta": {"type": "input_json_delta",
                                                                     "partial_json": function["arguments"]}}))
            if choice.get("finish_reason"):
                self.stop_reason = OPENAI_TO_ANTHROPIC_STOP.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[tuple[str, dict]]:
        events = [] if self.started else self._start()
        events += self._close_block()
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                                         "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events
