"""benchmarks/prefill.py's logits check: cgc's last-position logits of a chunked prefill against
the same model in PyTorch, on a small float32 plan (NumPy executor)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks.prefill import logits_check  # noqa: E402
from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from runtime.generate import prefill  # noqa: E402
from runtime.numpy_executor import NumpyExecutor  # noqa: E402
from runtime.plan import load_plan  # noqa: E402
from tests.hf_reference import build_model, save_checkpoint  # noqa: E402


def test_logits_check_measures_the_difference_and_the_top_two_gap(tmp_path):
    model = build_model("llama", seed=1)
    save_checkpoint(model, str(tmp_path))
    path = str(tmp_path / "model.plan")
    compile_plan("llama", path, CompileOptions(checkpoint=str(tmp_path), max_batch=1, max_seq=48, prefill_buckets=(8, 16)))
    prompt = np.random.default_rng(4).integers(0, model.config.vocab_size, size=29).tolist()  # 16 + 8 + 5 rows
    ours = prefill(NumpyExecutor(load_plan(path)), [prompt])[0]
    check = logits_check(ours, model, prompt)
    assert check["relative_error"] < 1e-4  # float32 plan against float32 PyTorch
    assert 0 < check["pytorch_top2_gap"] < 1
    moved = logits_check(ours + np.float32(0.01) * np.abs(ours).max(), model, prompt)
    assert moved["relative_error"] == pytest.approx(0.01, abs=1e-4)



def test_an_unknown_quant_mode_is_refused_before_any_work(monkeypatch, capsys):
    from benchmarks import prefill as benchmark
    monkeypatch.setattr("sys.argv", ["prefill.py", "--quants", "none,int3", "--export-only", "90"])
    with pytest.raises(SystemExit) as stop:
        benchmark.main()
    assert stop.value.code == 2 and "--quants takes none, int8, int4 or fp8, got 'int3'" in capsys.readouterr().err
