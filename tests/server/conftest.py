"""A tiny llama plan with a trained byte-level BPE tokenizer and a ChatML chat template, and
real uvicorn servers on 127.0.0.1 (ephemeral ports) in threads of the test process."""

import json
import threading
import time

import pytest

from tests.tokenizer_files import train_byte_level_bpe

pytest.importorskip("openai")
pytest.importorskip("uvicorn")
pytest.importorskip("tokenizers")

from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from runtime.tokenizer import Tokenizer  # noqa: E402

SLOTS = 4
MAX_SEQ = 64
API_KEY = "test-key"
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CORPUS = ["Hello world, the quick brown fox jumps over the lazy dog 123 4567!",
          "Once upon a time there was a small model that wanted to talk.",
          "def f(x_1): return x_1 ** 2  # code_like snake_case 3.14159"] * 30


def _tokenizer_dir(directory):
    tokenizer = train_byte_level_bpe(directory, CORPUS, 500, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    eos = tokenizer.token_to_id("<|im_end|>")
    (directory / "config.json").write_text(json.dumps({"eos_token_id": eos}))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": CHATML, "eos_token": "<|im_end|>", "bos_token": None}))
    return tokenizer.get_vocab_size()


@pytest.fixture(scope="session")
def plan_path(tmp_path_factory):
    """A 4-slot tiny llama plan (max sequence 64, prefill buckets 8 and 32) with the tokenizer."""
    directory = tmp_path_factory.mktemp("serve")
    vocab = _tokenizer_dir(directory)
    path = str(directory / "tiny-chat.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", overrides={"vocab_size": vocab}, max_batch=SLOTS,
                                               max_seq=MAX_SEQ, prefill_buckets=(8, 32), tokenizer=str(directory)))
    return path


@pytest.fixture(scope="session")
def plan(plan_path):
    return load_plan(plan_path)


@pytest.fixture(scope="session")
def tokenizer(plan):
    return Tokenizer(plan["tokenizer"])


class ControlledExecutor:
    """A NumPy executor whose launches wait for `gate` and then sleep `delay` seconds."""

    def __init__(self, executor):
        self._executor, self.gate, self.delay = executor, threading.Event(), 0.0
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self._executor, name)

    def launch(self, program):
        self.gate.wait()
        if self.delay:
            time.sleep(self.delay)
        self._executor.launch(program)


class RunningServer:
    """A uvicorn server of a Service in a thread; `url`, `service`, `stop()`."""

    def __init__(self, service):
        import socket

        import uvicorn

        from server.app import create_app
        self.service = service
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        config = uvicorn.Config(create_app(service), log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def client(self, api_key=API_KEY, **options):
        import openai
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=60, **options)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)


def start_server(plan, executor=None, max_queue=64, api_key=API_KEY):
    from server.app import Service
    from server.chat_template import ChatTemplate
    from server.engine import Engine
    from server.metrics import Metrics
    tokenizer = Tokenizer(plan["tokenizer"])
    metrics = Metrics()
    engine = Engine(executor or NumpyExecutor(plan), tokenizer, tokenizer.eos_token_ids, max_queue=max_queue,
                    metrics=metrics)
    service = Service(engine, plan, "tiny-chat", tokenizer, ChatTemplate.from_tokenizer_data(plan["tokenizer"]),
                      api_key, metrics)
    return RunningServer(service)


@pytest.fixture(scope="module")
def server(plan):
    running = start_server(plan)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def controlled(plan):
    """A server whose executor the test can hold (gate) or slow down (delay); max queue 2."""
    executor = ControlledExecutor(NumpyExecutor(plan))
    running = start_server(plan, executor=executor, max_queue=2)
    running.executor = executor
    yield running
    executor.gate.set()
    running.stop()
