"""`cgc serve`, `python -m server` and `cgc run --chat` as processes: SIGTERM lets the request in
flight finish and exits 0; the server package runs without the compiler; the chat streams the
same reply the runtime gives alone; bad input is a one-line error with exit code 2."""

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from runtime.generate import generate
from runtime.numpy_executor import NumpyExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args, stdin=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, input=stdin, timeout=120)


def _start(plan_path):
    process = subprocess.Popen([sys.executable, "-m", "server", plan_path, "--port", "0", "--device", "cpu"],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return process, found.group(1)
    raise AssertionError("server did not start: " + "".join(lines))


def test_sigterm_finishes_the_request_in_flight_and_exits_0(plan_path):
    import openai
    process, url = _start(plan_path)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=60)
        stream = client.completions.create(model="tiny-chat", prompt="Hello", max_tokens=50, temperature=0,
                                           stream=True)
        chunks = [next(iter(stream))]
        process.send_signal(signal.SIGTERM)
        chunks.extend(stream)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert process.wait(timeout=60) == 0
        assert "server stopped" in process.stderr.read()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{url}/health", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


ISOLATION = """
import sys
from server.session import open_model
from server.engine import Engine
import server.app, server.cli, server.chat, server.metrics, server.protocol
executor, tokenizer, template = open_model(sys.argv[1], device="cpu")
engine = Engine(executor, tokenizer, tokenizer.eos_token_ids).start()
engine.stop()
banned = [m for m in sys.modules if m.split(".")[0] in ("compiler", "yaml") or m.startswith("cuda.tile")]
print("BANNED", banned)
"""


def test_server_package_needs_no_compiler(plan_path):
    result = _run("-c", ISOLATION, plan_path)
    assert result.returncode == 0, result.stderr
    assert "BANNED []" in result.stdout, result.stdout


def test_chat_streams_the_reply_the_runtime_gives(plan_path, plan, tokenizer):
    from server.chat_template import ChatTemplate
    result = _run("-m", "compiler.cli", "run", plan_path, "--chat", "--max-new-tokens", "6", "--device", "cpu",
                  stdin="Hello world\n\nAgain\n")
    assert result.returncode == 0, result.stderr
    template = ChatTemplate.from_tokenizer_data(plan["tokenizer"])
    ids = tokenizer.encode(template.render([{"role": "user", "content": "Hello world"}]))
    generated = generate(NumpyExecutor(plan), [ids], 6, eos_token_ids=tokenizer.eos_token_ids)
    tokens = generated.tokens[0][:-1] if generated.finish_reasons[0] == "eos" else generated.tokens[0]
    assert result.stdout.startswith(tokenizer.decode(tokens) + "\n")
    assert result.stdout.count("\n") >= 2  # two replies, the empty line skipped


def test_serve_help_and_bad_input(tmp_path, plan_path):
    helped = _run("-m", "compiler.cli", "serve", "--help")
    assert helped.returncode == 0 and "--max-queue" in helped.stdout and "--api-key" in helped.stdout
    missing = _run("-m", "server", str(tmp_path / "none.plan"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "cannot read plan" in missing.stderr
    queue = _run("-m", "compiler.cli", "serve", plan_path, "--max-queue", "-1")
    assert queue.returncode == 2 and "--max-queue must be >= 0" in queue.stderr and "Traceback" not in queue.stderr


def test_chat_needs_a_template(tmp_path):
    from compiler.compile import CompileOptions, compile_plan
    path = str(tmp_path / "bare.plan")
    compile_plan("llama", path, CompileOptions(preset="tiny", max_seq=16, prefill_buckets=(8,)))
    result = _run("-m", "compiler.cli", "run", path, "--chat", stdin="Hi\n")
    assert result.returncode == 2 and "plan has no tokenizer" in result.stderr and "Traceback" not in result.stderr
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages[-1]['content'] }}")
    result = _run("-m", "compiler.cli", "run", path, "--chat", "--chat-template", str(template), stdin="Hi\n")
    assert result.returncode == 2 and "plan has no tokenizer" in result.stderr
