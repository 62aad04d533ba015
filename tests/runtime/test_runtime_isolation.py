"""The runtime never imports the compiler, cuda.tile, yaml or jinja2 (it is what apps embed); its
third-party imports are numpy, msgpack, safetensors and tokenizers (cupy on a GPU), as README says."""

import subprocess
import sys

from compiler.compile import CompileOptions, compile_plan

SCRIPT = """
import sys
from runtime.session import open_plan
from runtime.generate import generate_greedy
from runtime.inspect_plan import describe
import runtime.cupy_executor
from runtime.plan import load_plan
executor = open_plan(sys.argv[1], device="cpu", quiet=True)
print(generate_greedy(executor, [[1, 2, 3]], max_new_tokens=3))
describe(load_plan(sys.argv[1]))
from runtime.tokenizer import StreamDecoder, Tokenizer
from runtime.safetensors_file import SafetensorsFile
tokenizer = Tokenizer(load_plan(sys.argv[1])["tokenizer"])
print(tokenizer.decode(tokenizer.encode("Hello")))
allowed = {"numpy", "msgpack", "safetensors", "tokenizers", "cupy", "cupy_backends", "fastrlock", "runtime", "tests"}
third_party = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - allowed
print("THIRD_PARTY", sorted(m for m in third_party if not m.startswith("_") and m != "cython_runtime"))
banned = [m for m in sys.modules if m.split(".")[0] in ("compiler", "yaml", "jinja2") or m.startswith("cuda.tile")]
print("BANNED", banned)
"""


def test_runtime_imports_nothing_of_the_compiler(tmp_path):
    plan = str(tmp_path / "tiny.plan")
    tokenizer_dir = tmp_path / "tok"
    tokenizer_dir.mkdir()
    from tests.runtime.test_tokenizer import _train
    _train(tokenizer_dir)
    compile_plan("llama", plan, CompileOptions(preset="tiny", max_seq=16, prefill_buckets=(4,),
                                               tokenizer=str(tokenizer_dir)))
    result = subprocess.run([sys.executable, "-c", SCRIPT, plan], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "BANNED []" in result.stdout, result.stdout
    assert "THIRD_PARTY []" in result.stdout, result.stdout
