"""benchmarks/experimental/server_overhead.py streams every token of every request through the real
server over instant launches and reports the server's CPU per token."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_small_run_reports_cpu_per_token(tmp_path):
    out = tmp_path / "overhead.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "experimental", "server_overhead.py"),
                             "--slots", "4", "--requests", "12", "--new-tokens", "5", "--clients", "2",
                             "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["output_tokens"] == 12 * 5 and report["incomplete"] == 0 and report["requests"] == 12
    assert report["server_cpu_us_per_token"] > 0 and report["client_processes"] == 2
