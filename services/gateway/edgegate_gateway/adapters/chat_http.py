"""HTTP `/v1/chat/completions`, OpenAI-compatible, answered by the default assistant.

The question is the last user message. The answer comes back as a
`chat.completion`, or, with `"stream": true`, as server-sent events of
`chat.completion.chunk` ending in `data: [DONE]`, which is how the SDKs
stream. An `edgegate` field (and `Edgegate-Source` / `Edgegate-Score`
headers) says which passage answered and how close it was.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web

from edgegate_common.errors import InvalidArgument, NotFound
from edgegate_gateway.adapters.http_json import field, json_object
from edgegate_gateway.adapters.tasks_http import BACKEND_NAMES
from edgegate_gateway.assistant import Assistant
from edgegate_gateway.core import json_input
from edgegate_gateway.core.rules import ASSISTANT


class ChatHttp:
    def __init__(self, assistant: Assistant) -> None:
        self._assistant = assistant

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.complete)

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body = await json_object(request)
        model = field(body, "model", str)
        if model != ASSISTANT:
            raise NotFound(
                f"chat is answered by model {ASSISTANT!r}, not {model!r}",
                details={"param": "model"},
            )
        question = _question(body.get("messages"))
        reply = await self._assistant.ask(
            question, credential=request.headers.get("Authorization", "")
        )
        answer = reply.answer
        about = {
            "source": answer.passage.source if answer else None,
            "score": round(answer.score, 4) if answer else None,
            "backend": BACKEND_NAMES[reply.backend],
            "escalation_task": reply.escalation or None,
        }
        headers = {"Edgegate-Backend": BACKEND_NAMES[reply.backend]}
        if answer:
            headers |= {
                "Edgegate-Source": answer.passage.source,
                "Edgegate-Score": f"{answer.score:.4f}",
            }
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream") is True:
            return await _stream(request, reply.text, completion_id, created, about, headers)
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": ASSISTANT,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "edgegate": about,
            },
            headers=headers,
        )


def _question(messages: object) -> str:
    """The last user message's text: a string, or its text parts joined by spaces."""
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument("'messages' must be a non-empty list", details={"param": "messages"})
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise InvalidArgument(
            "'messages' has no user message to answer", details={"param": "messages"}
        )
    last = users[-1]
    message, where = messages[last], f"messages[{last}]"
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(
            _text_part(part, f"{where}.content[{i}]") for i, part in enumerate(content)
        )
    if not isinstance(content, str):
        raise InvalidArgument(
            f"{where}.content must be a string or a list of text parts, not "
            f"{json_input.json_type(content)}",
            details={"param": "messages"},
        )
    if not content.strip():
        raise InvalidArgument(f"{where} has no text", details={"param": "messages"})
    return content


def _text_part(part: object, where: str) -> str:
    """`{"type": "text", "text": "..."}`; the assistant reads text only."""
    if not isinstance(part, dict) or part.get("type") != "text":
        raise InvalidArgument(
            f"{where} must be a text part ({{'type': 'text', 'text': ...}}); "
            "the assistant reads text only",
            details={"param": "messages"},
        )
    text = part.get("text")
    if not isinstance(text, str):
        raise InvalidArgument(
            f"{where}.text must be a string, not {json_input.json_type(text)}",
            details={"param": "messages"},
        )
    return text


async def _stream(
    request: web.Request,
    text: str,
    completion_id: str,
    created: int,
    about: dict[str, Any],
    headers: dict[str, str],
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
    )
    await response.prepare(request)

    async def send(delta: dict[str, str], finish: str | None = None) -> None:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": ASSISTANT,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if finish:
            chunk["edgegate"] = about
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await send({"role": "assistant", "content": ""})
    words = text.split(" ")
    for i, word in enumerate(words):
        await send({"content": word if i == 0 else " " + word})
    await send({}, finish="stop")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
