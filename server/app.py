"""The HTTP app (Starlette): OpenAI-compatible routes over an `Engine`.

POST /v1/completions and /v1/chat/completions (JSON, or server-sent events with `stream`),
GET /v1/models, /health and /metrics. Errors are OpenAI's JSON error objects; with an API key,
/v1 routes need `Authorization: Bearer KEY`.
"""

import asyncio
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from server.engine import QueueFull, Request, ShuttingDown
from server.protocol import APIError, parse_chat, parse_completion


class Service:
    """What the routes share: the plan, its tokenizer and chat template, the engine, settings."""

    def __init__(self, engine, plan, model_name, tokenizer=None, chat_template=None, api_key=None, metrics=None):
        self.engine, self.plan, self.model_name = engine, plan, model_name
        self.tokenizer, self.chat_template, self.api_key, self.metrics = tokenizer, chat_template, api_key, metrics
        self.created = int(time.time())


def create_app(service):
    """The Starlette app serving `service`; the engine starts and stops with the app."""

    @asynccontextmanager
    async def lifespan(app):
        service.engine.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, service.engine.stop)

    async def completions(http_request):
        return await _generate(http_request, service, chat=False)

    async def chat_completions(http_request):
        return await _generate(http_request, service, chat=True)

    async def models(http_request):
        _authorize(http_request, service)
        limits = service.plan["limits"]
        return JSONResponse({"object": "list", "data": [{
            "id": service.model_name, "object": "model", "created": service.created, "owned_by": "cgc",
            "max_model_len": limits["max_seq"], "max_batch": limits["max_batch"]}]})

    async def health(http_request):
        engine = service.engine
        if engine.error is not None:
            return JSONResponse({"status": "error", "error": engine.error}, status_code=503)
        if engine.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(http_request):
        return PlainTextResponse(service.metrics.render(service.engine), media_type="text/plain; version=0.0.4")

    routes = [Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/health", health, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    handlers = {APIError: _api_error, HTTPException: _http_error, Exception: _server_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


async def _api_error(http_request, exc):
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(http_request, exc):
    return JSONResponse(APIError(exc.status_code, exc.detail or "error").body(), status_code=exc.status_code)


async def _server_error(http_request, exc):
    return JSONResponse(APIError(500, f"internal error: {type(exc).__name__}: {exc}").body(), status_code=500)


def _authorize(http_request, service):
    if service.api_key is None:
        return
    header = http_request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), service.api_key.encode()):
        raise APIError(401, "Incorrect API key provided", code="invalid_api_key")


async def _json_body(http_request):
    raw = await http_request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


async def _generate(http_request, service, chat):
    try:
        _authorize(http_request, service)
        body = await _json_body(http_request)
        if chat:
            job = parse_chat(body, service.plan, service.model_name, service.tokenizer, service.chat_template)
        else:
            job = parse_completion(body, service.plan, service.model_name, service.tokenizer)
    except APIError as exc:
        service.metrics.count("invalid")
        raise exc
    request = Request(job.prompt, job.max_tokens, job.sampling, job.stop, service.tokenizer,
                      asyncio.get_running_loop())
    try:
        service.engine.submit(request)
    except QueueFull as exc:
        service.metrics.count("rejected_queue_full")
        raise APIError(429, str(exc), code="queue_full") from None
    except ShuttingDown as exc:
        service.metrics.count("rejected_shutting_down")
        raise APIError(503, str(exc)) from None
    answer = _Answer(service, request, job, chat)
    if job.stream:
        return StreamingResponse(answer.events(http_request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return await answer.whole(http_request)


class _Answer:
    """Turns a request's engine events into an OpenAI response or chunk stream."""

    def __init__(self, service, request, job, chat):
        self.service, self.request, self.job, self.chat = service, request, job, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def _usage(self):
        prompt, completion = self.request.prompt_tokens, self.request.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _envelope(self, choices, object_name, **extra):
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.service.model_name,
                "choices": choices, **extra}

    def _cancel(self):
        self.request.cancel()
        self.service.engine.wake()

    async def whole(self, http_request):
        """Wait for the whole text (the client leaving cancels the request)."""
        gone = asyncio.ensure_future(_disconnected(http_request))
        parts, ids = [], []
        try:
            while True:
                getter = asyncio.ensure_future(self.request.events.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    self._cancel()
                    return PlainTextResponse("", status_code=499)
                kind, value = getter.result()
                if kind == "token":
                    parts.append(value[0])
                    ids.extend([] if value[1] is None else [value[1]])
                elif kind == "error":
                    raise APIError(500, f"generation failed: {value}")
                else:
                    break
        finally:
            gone.cancel()
        text, reason = "".join(parts), self.request.finish_reason
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        if self.job.return_token_ids:
            choice["token_ids"] = ids
        return JSONResponse(self._envelope([choice], self.object, usage=self._usage()))

    def _chunk(self, text=None, reason=None, first=False, token=None):
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text is not None else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            body = self._envelope([choice], "chat.completion.chunk")
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
            body = self._envelope([choice], "text_completion")
        if self.job.return_token_ids and not first:
            choice["token_ids"] = [] if token is None else [token]
        if self.job.include_usage:
            body["usage"] = None
        return _sse(body)

    async def events(self, http_request):
        """Server-sent events: chunks as text arrives, the finish reason, usage, [DONE]."""
        finished = False
        try:
            if self.chat:
                yield self._chunk(first=True)
            while True:
                kind, value = await self.request.events.get()
                if kind == "token":
                    text, token = value
                    if text or (self.job.return_token_ids and token is not None):
                        yield self._chunk(text, token=token)
                elif kind == "error":
                    finished = True
                    yield _sse(APIError(500, f"generation failed: {value}").body())
                    break
                else:
                    finished = True
                    yield self._chunk(reason=self.request.finish_reason)
                    if self.job.include_usage:
                        object_name = "chat.completion.chunk" if self.chat else "text_completion"
                        yield _sse(self._envelope([], object_name, usage=self._usage()))
                    break
            yield "data: [DONE]\n\n"
        finally:
            if not finished:  # the client went away (the stream was cancelled)
                self._cancel()


def _sse(body):
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _disconnected(http_request):
    while True:
        message = await http_request.receive()
        if message["type"] == "http.disconnect":
            return
