"""OpenAI API request parsing and checking: a JSON body becomes a `Job` or an `APIError`.

Errors carry the HTTP status and OpenAI's error object ({message, type, param, code}); every
value is checked here, before a request takes a place in the queue.
"""

import math
from dataclasses import dataclass

from runtime.errors import InputError
from runtime.generate import check_prompt
from runtime.sampling import SamplingParams

MAX_STOP = 4  # stop strings per request, as OpenAI's API allows


class APIError(Exception):
    """An error answered as OpenAI's JSON error object with `status`."""

    def __init__(self, status, message, param=None, code=None, type=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                             429: "rate_limit_error", 503: "service_unavailable"}.get(status, "server_error")

    def body(self):
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class Job:
    """A checked request: prompt ids, limits, sampling and how to answer."""

    prompt: list
    max_tokens: int
    sampling: SamplingParams
    stop: tuple
    stream: bool
    include_usage: bool
    return_token_ids: bool = False  # an extension (as vLLM's): each choice also lists its token ids


def _number(body, key, default, low=None, high=None, integer=False, low_open=False):
    value = body.get(key, default)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (not integer and not math.isfinite(value)):
        raise APIError(400, f"'{key}' must be {'an integer' if integer else 'a number'}, got {value!r}", param=key)
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        bound = f"{'>' if low_open else '>='} {low}" if low is not None else ""
        bound += (" and " if bound and high is not None else "") + (f"<= {high}" if high is not None else "")
        raise APIError(400, f"'{key}' must be {bound}, got {value!r}", param=key)
    return value


def _sampling(body):
    top_k = _number(body, "top_k", 0, low=-1, integer=True)
    sampling = SamplingParams(
        temperature=float(_number(body, "temperature", 1.0, low=0.0, high=2.0)),
        top_p=float(_number(body, "top_p", 1.0, low=0.0, high=1.0, low_open=True)),
        top_k=0 if top_k == -1 else top_k,  # -1: no cut (vLLM's convention)
        repetition_penalty=float(_number(body, "repetition_penalty", 1.0, low=0.0, low_open=True)),
        seed=_number(body, "seed", None, integer=True))
    if sampling.seed is not None:
        sampling = SamplingParams(sampling.temperature, sampling.top_k, sampling.top_p, sampling.repetition_penalty,
                                  sampling.seed % (1 << 31))
    for key in ("frequency_penalty", "presence_penalty"):
        if _number(body, key, 0.0, low=-2.0, high=2.0) != 0:
            raise APIError(400, f"'{key}' is not supported (use repetition_penalty)", param=key)
    return sampling


def _stop(body):
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > MAX_STOP:
        raise APIError(400, f"'stop' must be a string or a list of at most {MAX_STOP} strings", param="stop")
    return tuple(s for s in stop if s)


def _common(body, model):
    requested = body.get("model")
    if requested is not None and requested != model:
        raise APIError(404, f"The model '{requested}' does not exist (this server serves '{model}')",
                       param="model", code="model_not_found")
    n = body.get("n", 1)
    if n != 1:
        raise APIError(400, f"'n' must be 1 (one choice per request), got {n!r}", param="n")
    for key in ("logprobs", "echo", "best_of", "top_logprobs", "tools", "suffix"):
        value = body.get(key)
        if (value not in (None, 1)) if key == "best_of" else bool(value):
            raise APIError(400, f"'{key}' is not supported", param=key)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    return stream, bool(options.get("include_usage", False)) and stream


def _job(body, prompt, plan, model, default_max_tokens, max_tokens_keys=("max_tokens",)):
    stream, include_usage = _common(body, model)
    sampling, stop = _sampling(body), _stop(body)
    max_seq = plan["limits"]["max_seq"]
    room = max_seq - len(prompt)
    key = next((k for k in max_tokens_keys if body.get(k) is not None), max_tokens_keys[0])
    max_tokens = _number(body, key, None, low=1, integer=True)
    if room < 1:
        raise APIError(400, f"This model's maximum context length is {max_seq} tokens; the prompt has {len(prompt)} "
                            f"tokens, leaving no room for a completion", param="messages" if "messages" in body
                       else "prompt", code="context_length_exceeded")
    if max_tokens is None:
        max_tokens = min(default_max_tokens or room, room)
    try:
        check_prompt(plan, prompt, max_tokens, "the prompt")
    except InputError as exc:
        code = "context_length_exceeded" if "max sequence" in str(exc) else None
        raise APIError(400, f"{exc}; this model's maximum context length is {max_seq} tokens", param=key,
                       code=code) from None
    return_ids = body.get("return_token_ids", False)
    if not isinstance(return_ids, bool):
        raise APIError(400, "'return_token_ids' must be true or false", param="return_token_ids")
    return Job(prompt, max_tokens, sampling, stop, stream, include_usage, return_ids)


def parse_completion(body, plan, model, tokenizer):
    """The Job of a POST /v1/completions body."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if tokenizer is None:
            raise APIError(400, "this plan has no tokenizer: give the prompt as a list of token ids", param="prompt")
        if not prompt:
            raise APIError(400, "the prompt is empty", param="prompt")
        ids = tokenizer.encode(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise APIError(400, "one prompt per request (a list of prompts is not supported)", param="prompt")
    else:
        raise APIError(400, "'prompt' must be a string or a list of token ids", param="prompt")
    if tokenizer is None and _stop(body):
        raise APIError(400, "stop strings need a plan with a tokenizer", param="stop")
    return _job(body, ids, plan, model, default_max_tokens=16)


def parse_chat(body, plan, model, tokenizer, template):
    """The Job of a POST /v1/chat/completions body (messages rendered by the chat template)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise APIError(400, f"messages[{index}] must be an object with a 'role'", param="messages")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise APIError(400, f"messages[{index}]: only text content is supported", param="messages")
            message["content"] = "".join(p.get("text", "") for p in content)
        elif not isinstance(content, (str, type(None))):
            raise APIError(400, f"messages[{index}].content must be a string", param="messages")
    if tokenizer is None or template is None:
        raise APIError(400, "this plan has no chat template (compile with --weights DIR holding one, or start "
                            "the server with --chat-template FILE); use /v1/completions", param="messages")
    try:
        text = template.render(messages)
    except InputError as exc:
        raise APIError(400, str(exc), param="messages") from None
    # the template writes the special tokens itself (BOS included), as HF's apply_chat_template
    return _job(body, tokenizer.encode(text, add_special_tokens=False), plan, model, default_max_tokens=None,
                max_tokens_keys=("max_completion_tokens", "max_tokens"))
