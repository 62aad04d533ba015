"""The runtime never imports the compiler, cuda.tile, yaml or jinja2 (it is what apps embed)."""

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
banned = [m for m in sys.modules if m.split(".")[0] in ("compiler", "yaml", "jinja2") or m.startswith("cuda.tile")]
print("BANNED", banned)
"""


def test_runtime_imports_nothing_of_the_compiler(tmp_path):
    plan = str(tmp_path / "tiny.plan")
    compile_plan("llama", plan, CompileOptions(preset="tiny", max_seq=16, prefill_buckets=(4,)))
    result = subprocess.run([sys.executable, "-c", SCRIPT, plan], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "BANNED []" in result.stdout, result.stdout
