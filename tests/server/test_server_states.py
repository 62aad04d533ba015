"""Server states and plans outside the common path: draining (SIGTERM's first step) answers 503
and /health says so; a chat template that raises is a 400 naming its message; a plan without a
tokenizer or template serves token-id prompts and refuses text and chat with a clear 400."""

import json
import urllib.error
import urllib.request

import pytest

from compiler.compile import CompileOptions, compile_plan
from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor
from runtime.plan import load_plan
from server.chat_template import ChatTemplate
from tests.server.conftest import RunningServer, start_server


def _status(call):
    import openai
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value.status_code, caught.value.body["message"]


def test_draining_server_answers_503(plan):
    running = start_server(plan)
    try:
        client = running.client()
        assert client.completions.create(model="tiny-chat", prompt="Hi", max_tokens=2).choices
        running.service.engine.drain()
        status, message = _status(lambda: client.completions.create(model="tiny-chat", prompt="Hi", max_tokens=2))
        assert status == 503 and "shutting down" in message
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{running.url}/health", timeout=10)
        assert caught.value.code == 503 and json.loads(caught.value.read())["status"] == "shutting down"
    finally:
        running.stop()


def test_template_raising_is_a_400(plan):
    running = start_server(plan)
    running.service.chat_template = ChatTemplate(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}x")
    try:
        client = running.client()
        status, message = _status(lambda: client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "system", "content": "a"}], max_tokens=2))
        assert status == 400 and "System role not supported" in message
        reply = client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "a"}],
                                               max_tokens=2)
        assert reply.usage.prompt_tokens == 1  # the template's "x"
    finally:
        running.stop()


def test_plan_without_tokenizer_serves_token_ids(tmp_path):
    from server.app import Service
    from server.engine import Engine
    from server.metrics import Metrics
    path = str(tmp_path / "bare.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", max_batch=2, max_seq=32, prefill_buckets=(8,)))
    bare = load_plan(path)
    metrics = Metrics()
    running = RunningServer(Service(Engine(NumpyExecutor(bare), metrics=metrics), bare, "bare", metrics=metrics))
    try:
        client = running.client(api_key="anything")  # no --api-key: any key is accepted
        choice = client.completions.create(model="bare", prompt=[5, 6, 7], max_tokens=4, temperature=0,
                                           extra_body={"return_token_ids": True}).choices[0]
        assert choice.text == "" and choice.model_extra["token_ids"] == generate(
            NumpyExecutor(bare), [[5, 6, 7]], 4).tokens[0]
        status, message = _status(lambda: client.completions.create(model="bare", prompt="text", max_tokens=2))
        assert status == 400 and "no tokenizer" in message
        status, message = _status(lambda: client.chat.completions.create(
            model="bare", messages=[{"role": "user", "content": "a"}], max_tokens=2))
        assert status == 400 and "no chat template" in message
    finally:
        running.stop()
