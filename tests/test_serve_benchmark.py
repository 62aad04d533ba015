"""benchmarks/serve.py runs end to end in its CPU smoke mode (tiny plan, a few requests through a
real server process and the openai client) and writes a complete result."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "serve.py")


def test_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "--rates" in result.stdout and "--smoke" in result.stdout


@pytest.mark.slow
def test_smoke_run_writes_every_rate(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--smoke", "--out", str(tmp_path)], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "serve-cpu.json").read_text())
    assert [row["rate_per_s"] for row in report["rates"]] == [20.0, None]
    for row in report["rates"]:
        assert row["incomplete"] == 0 and row["output_tokens"] == report["requests"] * report["new_tokens"]
        assert row["differ_from_generate"] == 0
        assert 0 < row["ttft_p50_ms"] <= row["ttft_p99_ms"] and 0 <= row["itl_p50_ms"] <= row["itl_p99_ms"]
    assert report["generate_output_tokens_per_s"] > 0 and report["saturation_ratio_to_generate"] > 0
    assert report["server_exit_code"] == 0
