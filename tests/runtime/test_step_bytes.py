"""A decode step's weight bytes, from the plan: every projection and the LM head once, gathered
tables one row a sequence; `cgc inspect` prints them with each named device's floor."""

import pytest

from compiler.compile import CompileOptions, compile_plan
from compiler.targets import parse_gpus
from runtime.inspect_plan import describe
from runtime.step_bytes import decode_weight_bytes, kv_bytes_per_position


def _linear_parameters(hidden, inter, layers, heads, kv_heads, head_dim, vocab):
    per_layer = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden + 3 * hidden * inter
    return layers * per_layer + hidden * vocab


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_bytes_count_every_projection_once(tmp_path, batch):
    body = compile_plan("llama", str(tmp_path / "p.plan"),
                        CompileOptions(preset="tiny", max_batch=batch, max_seq=32, prefill_buckets=(8,)))
    linear = 4 * _linear_parameters(192, 320, 2, 6, 2, 32, 1000)  # float32
    measured = decode_weight_bytes(body)
    assert linear <= measured <= linear * 1.01  # plus gathered rows and small vectors
    assert kv_bytes_per_position(body) == 2 * 2 * 2 * 32 * 4  # layers x (k, v) x kv heads x head dim x fp32


def test_inspect_prints_the_floor_of_a_named_device(tmp_path):
    body = compile_plan("llama", str(tmp_path / "p.plan"),
                        CompileOptions(preset="tiny", max_seq=32, prefill_buckets=(8,)))
    body["targets"], body["devices"] = [87], {"sm_87": parse_gpus("orin-nano")[0].record()}
    text = "\n".join(describe(body))
    floor = 68e9 / decode_weight_bytes(body)
    assert "sm_87, 8 SMs (Jetson Orin Nano 8GB, 68 GB/s)" in text and f"floor {floor:,.0f} tokens/s" in text
    assert "targets    sm_87 (Jetson Orin Nano 8GB, 8 SMs)" in text
