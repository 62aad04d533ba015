"""The `cgc` command: the README's main job, and one-line errors with no traceback or partial file."""

import os
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from compiler.cli import main
from runtime.plan import PLAN_FORMAT, PLAN_VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cgc(*args):
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def nano_plan(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plan") / "nano.plan")
    assert main(["compile", "gpt2", "--preset", "nano", "--sm", "none", "--set", "vocab_size=500", "-o", path]) == 0
    return path


def test_readme_main_job_compiles_and_runs(tmp_path):
    plan = str(tmp_path / "gpt2.plan")
    compiled = _cgc("compile", "graphs/gpt2.yaml", "--preset", "tile-medium", "--sm", "none", "-o", plan)
    assert compiled.returncode == 0, compiled.stderr
    assert "pass fuse_epilogues" in compiled.stderr  # progress is shown
    ran = _cgc("run", plan, "--tokens", "464,3290", "--max-new-tokens", "5")
    assert ran.returncode == 0, ran.stderr
    tokens = [int(t) for t in ran.stdout.strip().strip(",").split(",")]
    assert len(tokens) == 5 and all(0 <= t < 50257 for t in tokens)
    inspected = _cgc("inspect", plan)
    assert "prefill_64" in inspected.stdout and "% saved" in inspected.stdout


def _assert_clean_error(result, *fragments):
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("cgc: error:")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


def test_unknown_op_error_leaves_no_file(tmp_path):
    graph = tmp_path / "bad.yaml"
    text = open(os.path.join(ROOT, "graphs", "gpt2.yaml")).read().replace("op: gelu", "op: swish")
    graph.write_text(text)
    out = tmp_path / "out.plan"
    result = _cgc("compile", str(graph), "--preset", "nano", "--sm", "none", "-o", str(out))
    _assert_clean_error(result, str(graph), "unknown op 'swish'", "(layer 0)")
    assert os.listdir(tmp_path) == ["bad.yaml"]


def test_unknown_preset_error():
    _assert_clean_error(_cgc("compile", "qwen3", "--preset", "qwen3-72b", "--sm", "none"), "unknown preset 'qwen3-72b'")


def _write_checkpoint(directory, tensors, config):
    import json

    from runtime.safetensors_file import write_safetensors
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    specs = {name: (dtype, array.shape) for name, (dtype, array) in tensors.items()}
    write_safetensors(str(directory / "model.safetensors"), specs, (array for _, array in tensors.values()))


def _nano_checkpoint_tensors(drop=None, reshape=None):
    from compiler.graph_loader import load_graph
    from compiler.passes import infer_shapes
    graph = infer_shapes.run(load_graph("gpt2", preset="nano", overrides={"vocab_size": 500, "n_positions": 64}))
    tensors = {}
    for weight in graph.weights.values():
        shape = reshape[1] if reshape and weight.name == reshape[0] else weight.shape
        if weight.name != drop:
            tensors[weight.name] = ("float32", np.ones(shape, dtype=np.float32))
    return tensors


CONFIG = {"vocab_size": 500, "n_positions": 64, "n_embd": 48, "n_layer": 3, "n_head": 3}


def test_missing_checkpoint_tensor(tmp_path):
    _write_checkpoint(tmp_path / "ckpt", _nano_checkpoint_tensors(drop="transformer.h.1.mlp.c_fc.bias"), CONFIG)
    result = _cgc("compile", "gpt2", "--weights", str(tmp_path / "ckpt"), "--sm", "none", "--max-seq", "64",
                  "-o", str(tmp_path / "x.plan"))
    _assert_clean_error(result, "no tensor 'transformer.h.1.mlp.c_fc.bias'")
    assert not (tmp_path / "x.plan").exists()


def test_misshaped_checkpoint_tensor(tmp_path):
    tensors = _nano_checkpoint_tensors(reshape=("transformer.h.0.attn.c_proj.weight", (48, 40)))
    _write_checkpoint(tmp_path / "ckpt", tensors, CONFIG)
    result = _cgc("compile", "gpt2", "--weights", str(tmp_path / "ckpt"), "--sm", "none", "--max-seq", "64",
                  "-o", str(tmp_path / "x.plan"))
    _assert_clean_error(result, "model.safetensors", "transformer.h.0.attn.c_proj.weight", "[48, 40]", "[48, 48]")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_plan_of_another_version(tmp_path, nano_plan):
    envelope = msgpack.unpackb(open(nano_plan, "rb").read(), raw=False)
    envelope["version"] = 2  # plans whose tokenizer was a hand-written BPE's data
    path = tmp_path / "v2.plan"
    path.write_bytes(msgpack.packb(envelope, use_bin_type=True))
    _assert_clean_error(_cgc("inspect", str(path)), "format version 2 is not supported", f"supports version {PLAN_VERSION}")


def test_truncated_plan(tmp_path, nano_plan):
    data = open(nano_plan, "rb").read()
    path = tmp_path / "cut.plan"
    path.write_bytes(data[: len(data) // 2])
    _assert_clean_error(_cgc("run", str(path), "--tokens", "1,2"), "truncated or corrupted")


def test_corrupted_plan(tmp_path, nano_plan):
    data = bytearray(open(nano_plan, "rb").read())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "bad.plan"
    path.write_bytes(bytes(data))
    _assert_clean_error(_cgc("inspect", str(path)), "checksum mismatch")


def test_not_a_plan(tmp_path):
    path = tmp_path / "x.plan"
    path.write_bytes(msgpack.packb({"format": "something-else"}))
    _assert_clean_error(_cgc("inspect", str(path)), f"no '{PLAN_FORMAT}' format marker")


def test_prompt_longer_than_plan(nano_plan):
    tokens = ",".join(["1"] * 250)
    _assert_clean_error(_cgc("run", nano_plan, "--tokens", tokens, "--max-new-tokens", "10"),
                        "more than the plan's max sequence 256")


def test_token_outside_vocabulary(nano_plan):
    _assert_clean_error(_cgc("run", nano_plan, "--tokens", "1,500"), "token id 500 outside the vocabulary")


def test_prompt_needs_a_tokenizer(nano_plan):
    _assert_clean_error(_cgc("run", nano_plan, "--prompt", "Hello"), "plan has no tokenizer", "--tokenizer")


def test_prompt_text_round_trip(tmp_path):
    pytest.importorskip("transformers")
    from tests.hf_reference import build_model, save_checkpoint
    from tests.runtime.test_tokenizer import _train
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    _train(checkpoint)  # tokenizer.json (its config.json is then replaced by the model's)
    save_checkpoint(build_model("llama"), str(checkpoint))
    plan = str(tmp_path / "llama.plan")
    assert _cgc("compile", "llama", "--weights", str(checkpoint), "--sm", "none", "-o", plan).returncode == 0
    _assert_clean_error(_cgc("run", plan, "--prompt", ""), "the prompt is empty")
    ran = _cgc("run", plan, "--prompt", "Hello world", "--max-new-tokens", "6", "--ignore-eos", "--stats",
               "--temperature", "0.8", "--seed", "3")
    assert ran.returncode == 0, ran.stderr
    again = _cgc("run", plan, "--prompt", "Hello world", "--max-new-tokens", "6", "--ignore-eos",
                 "--temperature", "0.8", "--seed", "3")
    assert ran.stdout == again.stdout and ran.stdout.strip()
    assert "generated 6 tokens" in ran.stderr and "decode" in ran.stderr


def test_llama3_prompt_starts_with_bos(tmp_path):
    from runtime.plan import load_plan
    from runtime.tokenizer import Tokenizer
    from tests import tokenizer_files
    tokenizer_dir = tokenizer_files.checkpoint_files("llama3", tmp_path / "tok")
    plan = str(tmp_path / "llama3.plan")
    compiled = _cgc("compile", "llama", "--preset", "tiny", "--sm", "none", "--tokenizer", tokenizer_dir,
                    "--set", "vocab_size=128256", "--set", "hidden_size=64", "--set", "num_attention_heads=2",
                    "--set", "num_key_value_heads=1", "--set", "intermediate_size=64", "--max-seq", "32",
                    "--prefill-buckets", "8", "-o", plan)
    assert compiled.returncode == 0, compiled.stderr
    tokenizer = Tokenizer(load_plan(plan)["tokenizer"])
    assert tokenizer.encode("Hello")[:1] == [128000] and len(tokenizer.encode("Hello")) == 2
    ran = _cgc("run", plan, "--prompt", "Hello", "--max-new-tokens", "2", "--ignore-eos", "--stats")
    assert ran.returncode == 0, ran.stderr
    assert "prompt 2 tokens" in ran.stderr  # <|begin_of_text|> + "Hello"
    _assert_clean_error(_cgc("run", plan, "--prompt", "a" * 120_000), "bytes, far more than")


def test_default_max_seq_fits_learned_positions(tmp_path):
    from runtime.plan import load_plan
    plan = str(tmp_path / "p96.plan")
    compiled = _cgc("compile", "gpt2", "--preset", "nano", "--sm", "none", "--set", "n_positions=96",
                    "--set", "vocab_size=300", "-o", plan)
    assert compiled.returncode == 0, compiled.stderr
    assert load_plan(plan)["limits"]["max_seq"] == 96 and "the model's 96 positions" in compiled.stderr
    small = str(tmp_path / "p40.plan")
    assert _cgc("compile", "gpt2", "--preset", "nano", "--sm", "none", "--set", "n_positions=40",
                "--set", "vocab_size=300", "-o", small).returncode == 0
    assert load_plan(small)["limits"] == {"max_batch": 1, "max_seq": 40, "prefill_buckets": [40]}
    _assert_clean_error(_cgc("compile", "gpt2", "--preset", "nano", "--sm", "none", "--set", "n_positions=96",
                             "--max-seq", "128", "-o", plan), "--max-seq 128 exceeds the model's 96 learned positions")


@pytest.mark.parametrize("flags, fragment", [
    (["--max-batch", "0"], "--max-batch must be an integer in 1..1024, got 0"),
    (["--max-batch", "100000"], "--max-batch must be an integer in 1..1024"),
    (["--max-seq", "-3"], "--max-seq must be an integer in 1..1048576, got -3"),
    (["--prefill-buckets", "0"], "prefill bucket 0 must be"),
    (["--prefill-buckets", "x"], "--prefill-buckets expects comma-separated integers"),
    (["--max-batch", "1024", "--max-seq", "1048576", "--set", "n_positions=1048576", "--set", "n_embd=480"],
     "GiB of device memory"),
    (["--set", "n_layer=9**9**9"], "repeat count must be an integer in 0..4096, got 9**9**9"),
    (["--set", "n_layer=[1, 2]"], "repeat count must be an integer"),
    (["--set", "x.y=3"], "a config key is a plain name"),
    (["--set", "vocab_size=0"], "must be a positive integer"),
    (["--set", "layer_norm_epsilon=-1"], "attribute 'eps' must be a positive number"),
], ids=["batch-0", "batch-huge", "seq-negative", "bucket-0", "bucket-text", "memory", "set-pow", "set-list",
        "set-key", "vocab-0", "eps-negative"])
def test_bad_compile_flags(tmp_path, flags, fragment):
    result = _cgc("compile", "gpt2", "--preset", "nano", "--sm", "none", *flags, "-o", str(tmp_path / "x.plan"))
    _assert_clean_error(result, fragment)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("flags, fragment", [
    (["--tokens", "1,2", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0"),
    (["--tokens", "1,2", "--temperature", "nan"], "temperature must be finite"),
    (["--tokens", "1,2", "--top-p", "-1"], "top_p must be finite and in (0, 1]"),
    (["--tokens", "1,2", "--repetition-penalty", "inf"], "repetition_penalty must be finite"),
    (["--tokens", "1,2", "--top-k", "-5"], "top_k must be in 0..2147483647"),
    (["--tokens", "1,99999999999"], "token id 99999999999 is outside"),
    (["--tokens", "1,-2"], "token id -2 is outside"),
    (["--tokens", "1,2.5"], "--tokens expects comma-separated integers"),
    (["--tokens", "1,2", "--seed", "-1"], "seed must be in 0..2147483647"),
], ids=["new-0", "nan", "top-p", "penalty-inf", "top-k", "id-huge", "id-negative", "id-float", "seed"])
def test_bad_run_flags(nano_plan, flags, fragment):
    _assert_clean_error(_cgc("run", nano_plan, *flags), fragment)


def test_invalid_utf8_and_unknown_device(nano_plan):
    result = subprocess.run([sys.executable.encode(), b"-m", b"compiler.cli", b"run", nano_plan.encode(), b"--prompt",
                             b"caf\xe9"], capture_output=True, cwd=ROOT)
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"--prompt: not valid UTF-8" in result.stderr
    bad_set = subprocess.run([sys.executable.encode(), b"-m", b"compiler.cli", b"compile", b"gpt2", b"--sm", b"none",
                              b"--set", b"n_layer=\xff"], capture_output=True, cwd=ROOT)
    assert bad_set.returncode == 2 and b"--set: not valid UTF-8" in bad_set.stderr
    unknown = _cgc("run", nano_plan, "--tokens", "1", "--device", "tpu")
    assert unknown.returncode == 2 and "invalid choice: 'tpu'" in unknown.stderr


def test_inspect_one_kernel(nano_plan):
    shown = _cgc("inspect", nano_plan, "--kernel", "0")
    assert shown.returncode == 0 and shown.stdout.startswith("kernel [0] ")
    _assert_clean_error(_cgc("inspect", nano_plan, "--kernel", "999"), "--kernel 999: the plan has kernels 0 to")


def test_inspect_refuses_non_regular_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    _assert_clean_error(_cgc("inspect", str(tmp_path / "fifo")), "not a regular file")
    _assert_clean_error(_cgc("inspect", str(tmp_path)), "not a regular file")
    _assert_clean_error(_cgc("inspect", str(tmp_path / "missing.plan")), "no such file")


def test_quantized_compile_inspect_and_run(tmp_path):
    plan = str(tmp_path / "q.plan")
    result = _cgc("compile", "llama", "--preset", "tiny", "--quant", "int4", "--group-size", "32", "--sm", "none",
                  "--dtype", "bfloat16", "-o", plan)
    assert result.returncode == 0, result.stderr
    shown = _cgc("inspect", plan).stdout
    assert "quantization  --quant int4, int4 groups of 32 input features: int4 x" in shown
    assert "lm_head: int8" in shown and "codes" in shown
    run = _cgc("run", plan, "--tokens", "5,6,7", "--max-new-tokens", "3", "--device", "cpu")
    assert run.returncode == 0 and len(run.stdout.strip().split(",")) >= 3, run.stderr


def test_quantization_flags_are_checked(tmp_path):
    _assert_clean_error(_cgc("compile", "llama", "--preset", "tiny", "--quant", "fp8", "--sm", "86",
                             "-o", str(tmp_path / "x.plan")), "--quant fp8: sm_86 has no fp8", "89")
    _assert_clean_error(_cgc("compile", "gpt2", "--preset", "nano", "--quant", "int4", "--sm", "none",
                             "-o", str(tmp_path / "x.plan")), "--group-size 128 does not divide the 48 input features")
    assert not os.path.exists(tmp_path / "x.plan")


def test_prompt_logits_keeps_every_prefill_position(tmp_path, nano_plan):
    """By default a prefill gives each sequence's last position's logits; --prompt-logits gives
    every position's, the same values at the last ones."""
    from runtime.numpy_executor import NumpyExecutor
    from runtime.plan import load_plan
    path = str(tmp_path / "all.plan")
    assert main(["compile", "gpt2", "--preset", "nano", "--sm", "none", "--set", "vocab_size=500",
                 "--prompt-logits", "-o", path]) == 0
    assert "every prompt position (--prompt-logits)" in _cgc("inspect", path).stdout
    assert "each sequence's last position" in _cgc("inspect", nano_plan).stdout
    tokens = np.random.default_rng(4).integers(0, 500, size=(1, 64)).astype(np.int32)
    every = NumpyExecutor(load_plan(path)).run("prefill_64", tokens, [0], [40])["logits"]
    last = NumpyExecutor(load_plan(nano_plan)).run("prefill_64", tokens, [0], [40])["logits"]
    assert every.shape == (64, 500) and last.shape == (1, 500)
    np.testing.assert_allclose(last[0], every[39], rtol=0, atol=1e-5 * np.abs(every[39]).max())
