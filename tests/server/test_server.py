"""The OpenAI-compatible server, through the official `openai` client against a real uvicorn
server: completions and chat, streaming and not, stop strings, usage, errors (each a 4xx JSON
error after which the server keeps serving), and 32 concurrent streams on 4 slots, each equal to
the same request run alone by the runtime."""

import json
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor
from runtime.sampling import SamplingParams
from tests.server.conftest import API_KEY, MAX_SEQ, SLOTS

MODEL = "tiny-chat"
PROMPTS = ["Hello world", "Once upon a time", "the quick brown fox", "def f(x_1):", "small model", "123 4567!",
           "lazy dog jumps", "there was a"]


@pytest.fixture(scope="module")
def alone(plan, tokenizer):
    """The text and token count of a request run alone by runtime.generate (the reference)."""
    executor = NumpyExecutor(plan)

    def run(prompt_ids, max_tokens, temperature=0.0, seed=None, top_p=1.0):
        sampling = SamplingParams(temperature=temperature, top_p=top_p, seed=seed)
        result = generate(executor, [prompt_ids], max_tokens, sampling=sampling,
                          eos_token_ids=tokenizer.eos_token_ids)
        tokens, eos = result.tokens[0], result.finish_reasons[0] == "eos"
        return tokenizer.decode(tokens[:-1] if eos else tokens), len(tokens), "stop" if eos else "length"
    return run


def _chat_ids(plan, tokenizer, messages):
    from server.chat_template import ChatTemplate
    return tokenizer.encode(ChatTemplate.from_tokenizer_data(plan["tokenizer"]).render(messages))


def _post(url, data, api_key=API_KEY):
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_models_health_and_metrics(server):
    client = server.client()
    assert [model.id for model in client.models.list().data] == [MODEL]
    with urllib.request.urlopen(f"{server.url}/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=3, temperature=0)
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert f"cgc_slots_total {SLOTS}" in text
    assert "cgc_time_to_first_token_seconds_count" in text and "cgc_inter_token_latency_seconds_bucket" in text
    assert int(text.split("\ncgc_generation_tokens_total ")[1].split()[0]) >= 3


def test_completion_equals_the_runtime_alone(server, tokenizer, alone):
    response = server.client().completions.create(model=MODEL, prompt=PROMPTS[1], max_tokens=10, temperature=0)
    text, count, reason = alone(tokenizer.encode(PROMPTS[1]), 10)
    choice = response.choices[0]
    assert (choice.text, choice.finish_reason) == (text, reason)
    assert response.usage.prompt_tokens == len(tokenizer.encode(PROMPTS[1]))
    assert response.usage.completion_tokens == count
    assert response.usage.total_tokens == response.usage.prompt_tokens + count


def test_seeded_sampled_completion_repeats(server, tokenizer, alone):
    client = server.client()
    ask = dict(model=MODEL, prompt=PROMPTS[0], max_tokens=12, temperature=1.0, top_p=0.95, seed=11)
    first, second = (client.completions.create(**ask).choices[0].text for _ in range(2))
    assert first == second == alone(tokenizer.encode(PROMPTS[0]), 12, 1.0, 11, 0.95)[0]
    assert client.completions.create(**{**ask, "seed": 12}).choices[0].text != first


def test_streaming_completion_with_usage(server, tokenizer, alone):
    stream = server.client().completions.create(model=MODEL, prompt=PROMPTS[2], max_tokens=10, temperature=1.0,
                                                seed=5, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text, count, reason = alone(tokenizer.encode(PROMPTS[2]), 10, 1.0, 5)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reason
    assert all(c.usage is None for c in chunks[:-1]) and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == count


def test_chat_and_streaming_chat(server, plan, tokenizer, alone):
    client = server.client()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world"}]
    ids = _chat_ids(plan, tokenizer, messages)
    text, count, reason = alone(ids, 12, 1.0, 3)
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=1.0, seed=3)
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == text
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (len(ids), count)
    assert response.choices[0].finish_reason == reason
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=1.0,
                                                 seed=3, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == response.choices[0].finish_reason


def test_chat_without_max_tokens_fills_the_context(server, plan, tokenizer):
    messages = [{"role": "user", "content": "Hi"}]
    response = server.client().chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                                       stop=["<never>"])
    room = MAX_SEQ - len(_chat_ids(plan, tokenizer, messages))
    assert response.usage.completion_tokens <= room
    assert response.choices[0].finish_reason == "length" or response.usage.completion_tokens < room


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_ends_the_text_before_it(server, tokenizer, alone, stream):
    text, _, _ = alone(tokenizer.encode(PROMPTS[3]), 16, 1.0, 9)
    stop = text[5:8]  # a stop string the text reaches only after a few tokens
    assert len(stop) == 3, text
    ask = dict(model=MODEL, prompt=PROMPTS[3], max_tokens=16, temperature=1.0, seed=9, stop=[stop, "@@@"])
    if stream:
        chunks = list(server.client().completions.create(**ask, stream=True))
        got, reason = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
    else:
        choice = server.client().completions.create(**ask).choices[0]
        got, reason = choice.text, choice.finish_reason
    assert got == text[:text.find(stop)]
    assert reason == "stop"


def _error(call):
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    body = caught.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type"}, body  # the client unwraps "error"
    return caught.value.status_code, body


@pytest.mark.parametrize("ask, status, fragment", [
    (dict(model="gpt-5"), 404, "The model 'gpt-5' does not exist"),
    (dict(prompt="word " * 70), 400, "maximum context length is 64"),
    (dict(max_tokens=60, prompt="Hello world, the quick brown fox"), 400, "more than the plan's max sequence 64"),
    (dict(temperature=-1), 400, "'temperature' must be >= 0.0"),
    (dict(temperature=3), 400, "'temperature' must be >= 0.0 and <= 2.0"),
    (dict(top_p=0), 400, "'top_p' must be > 0.0"),
    (dict(extra_body={"top_k": -5}), 400, "'top_k' must be >= -1"),
    (dict(extra_body={"repetition_penalty": 0}), 400, "'repetition_penalty' must be > 0.0"),
    (dict(n=2), 400, "'n' must be 1"),
    (dict(max_tokens=0), 400, "'max_tokens' must be >= 1"),
    (dict(stop=["a", "b", "c", "d", "e"]), 400, "'stop' must be a string or a list of at most 4"),
    (dict(prompt=[1, 2, 100000]), 400, "outside the vocabulary"),
    (dict(frequency_penalty=0.5), 400, "'frequency_penalty' is not supported"),
])
def test_bad_request_is_a_json_error_and_the_server_goes_on(server, ask, status, fragment):
    client = server.client()
    ask = {"model": MODEL, "prompt": "Hello", "max_tokens": 4, **ask}
    got, body = _error(lambda: client.completions.create(**ask))
    assert got == status and fragment in body["message"], body
    assert client.completions.create(model=MODEL, prompt="Hello", max_tokens=2).usage.completion_tokens >= 1


def test_bad_chat_requests(server):
    client = server.client()
    status, body = _error(lambda: client.chat.completions.create(model=MODEL, messages=[], max_tokens=2))
    assert status == 400 and "'messages' must be a non-empty list" in body["message"]
    status, body = _error(lambda: client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "word " * 70}], max_tokens=2))
    assert status == 400 and body["code"] == "context_length_exceeded"


def test_wrong_api_key_is_401(server):
    status, body = _error(lambda: server.client(api_key="wrong").completions.create(model=MODEL, prompt="Hi",
                                                                                    max_tokens=2))
    assert status == 401 and body["code"] == "invalid_api_key"
    assert server.client().completions.create(model=MODEL, prompt="Hi", max_tokens=2).choices


def test_malformed_json_is_400(server):
    for path in ("/v1/completions", "/v1/chat/completions"):
        status, body = _post(f"{server.url}{path}", b'{"model": "tiny-chat", "prompt": ')
        assert status == 400 and "not valid JSON" in body["error"]["message"]
        status, body = _post(f"{server.url}{path}", b'[1, 2]')
        assert status == 400 and "must be a JSON object" in body["error"]["message"]
    status, body = _post(f"{server.url}/v1/nowhere", b"{}")
    assert status == 404 and body["error"]["type"] == "not_found_error"
    assert server.client().completions.create(model=MODEL, prompt="Hi", max_tokens=2).choices


def test_32_concurrent_streams_on_4_slots_each_as_alone(server, tokenizer, alone):
    """Half greedy, half sampled with their own seeds, all streamed at once: every response is
    complete and equals that request run alone (so none took another's ids or slot state)."""
    asks = [dict(prompt=PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)), max_tokens=4 + i % 7,
                 temperature=0.0 if i % 2 else 1.0, seed=100 + i) for i in range(32)]
    results = [None] * len(asks)
    client = server.client()

    def worker(index):
        chunks = list(client.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                                **asks[index]))
        results[index] = ("".join(c.choices[0].text for c in chunks if c.choices), chunks[-1].usage.completion_tokens,
                          [c.choices[0].finish_reason for c in chunks if c.choices][-1])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(asks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for ask, result in zip(asks, results):
        assert result is not None, ask
        assert result == alone(tokenizer.encode(ask["prompt"]), ask["max_tokens"], ask["temperature"], ask["seed"]), ask
    assert len({r[0] for r in results}) > 16  # the outputs differ: a mix-up could not hide


def test_queue_full_is_429(controlled):
    """4 slots busy (the executor held) and 2 waiting: the next request gets 429; once the
    executor runs again every accepted request completes."""
    executor, engine = controlled.executor, controlled.service.engine
    executor.gate.clear()
    client = controlled.client()
    done = []
    threads = [threading.Thread(target=lambda: done.append(client.completions.create(
        model=MODEL, prompt="Hello", max_tokens=3, temperature=0))) for _ in range(SLOTS + 2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(engine.active) + engine.queue_depth() < SLOTS + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    status, body = _error(lambda: client.completions.create(model=MODEL, prompt="Hello", max_tokens=3))
    assert status == 429 and body["code"] == "queue_full"
    executor.gate.set()
    for thread in threads:
        thread.join(60)
    assert len(done) == SLOTS + 2 and all(r.usage.completion_tokens >= 1 for r in done)


def test_client_disconnect_cancels_the_request(controlled):
    executor, engine, metrics = controlled.executor, controlled.service.engine, controlled.service.metrics
    executor.delay = 0.05
    try:
        before = metrics.requests.get("cancelled", 0)
        stream = controlled.client().completions.create(model=MODEL, prompt="Hello", max_tokens=50,
                                                        temperature=0, stream=True)
        next(iter(stream))
        stream.close()
        deadline = time.monotonic() + 10
        while metrics.requests.get("cancelled", 0) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metrics.requests.get("cancelled", 0) == before + 1
        assert engine.busy_slots() == 0
    finally:
        executor.delay = 0.0


@pytest.mark.parametrize("stream", [False, True])
def test_token_ids_extension(server, plan, tokenizer, stream):
    """`return_token_ids` (as vLLM's) lists each choice's ids: what a benchmark counts tokens by."""
    prompt = tokenizer.encode(PROMPTS[4])
    expected = generate(NumpyExecutor(plan), [prompt], 6, sampling=SamplingParams(temperature=1.0, seed=2),
                        eos_token_ids=tokenizer.eos_token_ids).tokens[0]
    ask = dict(model=MODEL, prompt=prompt, max_tokens=6, temperature=1.0, seed=2,
               extra_body={"return_token_ids": True})
    if stream:
        chunks = list(server.client().completions.create(**ask, stream=True))
        ids = [i for c in chunks for i in c.choices[0].model_extra["token_ids"]]
        assert all(len(c.choices[0].model_extra["token_ids"]) <= 1 for c in chunks)
    else:
        ids = server.client().completions.create(**ask).choices[0].model_extra["token_ids"]
    assert ids == expected


def test_client_leaving_a_non_streaming_request_cancels_it(controlled):
    import socket
    executor, engine, metrics = controlled.executor, controlled.service.engine, controlled.service.metrics
    executor.delay = 0.05
    try:
        before = metrics.requests.get("cancelled", 0)
        body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 50, "temperature": 0}).encode()
        host, port = controlled.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            deadline = time.monotonic() + 10
            while not engine.active and time.monotonic() < deadline:
                time.sleep(0.01)
            assert engine.active
        deadline = time.monotonic() + 10
        while metrics.requests.get("cancelled", 0) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metrics.requests.get("cancelled", 0) == before + 1 and engine.busy_slots() == 0
    finally:
        executor.delay = 0.0
