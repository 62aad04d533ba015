"""Every kernel template exports to a cubin on this CPU-only machine: entry symbol, block size,
parameter layout (calling convention cutile_python_v1), on-disk cache, errors (tile choices and
grids: tests/compiler/test_tiles.py)."""

import time

import pytest

pytest.importorskip("cuda.tile")

from compiler import cutile_export  # noqa: E402
from compiler.cutile_export import (KernelExportError, KernelKey, block_threads, export_cubin,  # noqa: E402
                                    parameter_sizes, render, symbols)
from compiler.kernels import choose_tiles  # noqa: E402

F16 = "float16"
I32 = "int32"
EVERY_SM = (80, 90, 100, 120, 121)

# (case name, template, generic constants, operand (dtype, shape) list): tiny, odd sizes
TINY = [
    ("embed", "embed", {"dtype": F16, "positions": True},
     [(I32, (2, 5)), (I32, (2,)), (F16, (300, 48)), (F16, (64, 48)), (F16, (10, 48))]),
    ("layernorm", "layernorm", {"dtype": F16, "eps": 1e-5}, [(F16, (10, 48)), (F16, (48,)), (F16, (48,)), (F16, (10, 48))]),
    ("rmsnorm", "rmsnorm", {"dtype": "bfloat16", "eps": 1e-6, "group": 16},
     [("bfloat16", (10, 48)), ("bfloat16", (16,)), ("bfloat16", (10, 48))]),
    ("add_norm", "add_norm", {"dtype": F16, "eps": 1e-5, "norm": "rmsnorm"},
     [(F16, (10, 48)), (F16, (10, 48)), (F16, (48,)), (F16, (10, 48)), (F16, (10, 48))]),
    ("matmul", "matmul", {"dtype": F16, "out_dtype": F16, "epilogue": ("bias", "gelu", "residual")},
     [(F16, (10, 48)), (F16, (48, 200)), (F16, (200,)), (F16, (10, 200)), (F16, (10, 200))]),
    ("matmul_silu_fp32", "matmul", {"dtype": "float32", "out_dtype": "float32", "epilogue": ("silu_mul",)},
     [("float32", (37, 48)), ("float32", (48, 136)), ("float32", (48, 136)), ("float32", (37, 136))]),
    ("matmul_decode_folded_norm", "matmul",
     {"dtype": "bfloat16", "out_dtype": "bfloat16", "epilogue": ("silu_mul",), "prologue": "rmsnorm", "eps": 1e-6,
      "stats_group": 32},
     [("bfloat16", (2, 48)), ("float32", (2, 2)), ("bfloat16", (48, 136)), ("bfloat16", (48, 136)),
      ("bfloat16", (2, 136))]),
    ("matmul_one_row_folded_norm", "matmul",  # batch-1 decode: the no-MMA path (TILE_M == 1)
     {"dtype": F16, "out_dtype": F16, "epilogue": ("bias", "gelu"), "prologue": "layernorm", "eps": 1e-5,
      "stats_group": 32},
     [(F16, (1, 48)), ("float32", (1, 4)), (F16, (48, 200)), (F16, (200,)), (F16, (1, 200))]),
    ("matmul_row_stats", "matmul",
     {"dtype": F16, "out_dtype": F16, "epilogue": ("bias", "residual"), "row_stats": "layernorm",
      "stats_group": 32},
     [(F16, (10, 48)), (F16, (48, 200)), (F16, (200,)), (F16, (10, 200)), (F16, (10, 200)), ("float32", (10, 16))]),
    ("embed_row_stats", "embed", {"dtype": F16, "positions": False, "row_stats": "rmsnorm", "stats_group": 32},
     [(I32, (2, 5)), (I32, (2,)), (F16, (300, 48)), (F16, (10, 48)), ("float32", (10, 2))]),
    ("gelu", "gelu", {"dtype": F16}, [(F16, (10, 48))] * 2),
    ("silu_mul", "silu_mul", {"dtype": F16}, [(F16, (10, 48))] * 3),
    ("add", "add", {"dtype": "float32"}, [("float32", (10, 48))] * 3),
    ("rope", "rope", {"dtype": F16, "heads": 3, "head_dim": 16, "seq": 5},
     [(F16, (10, 48)), (I32, (2,)), (I32, (2,)), ("float32", (64, 8)), ("float32", (64, 8)), (F16, (10, 48))]),
    ("rope_norm_qk", "rope", {"dtype": "bfloat16", "heads": 3, "head_dim": 16, "seq": 8, "norm_eps": 1e-6, "q_heads": 2},
     [("bfloat16", (16, 48)), ("bfloat16", (16,)), ("bfloat16", (16,)), (I32, (2,)), (I32, (2,)), ("float32", (64, 8)),
      ("float32", (64, 8)), ("bfloat16", (16, 48))]),
    ("attention_prefill", "attention",
     {"dtype": F16, "heads": 3, "kv_heads": 1, "head_dim": 16, "seq": 5, "scale": 0.25, "phase": "prefill"},
     [(F16, (10, 48)), (F16, (10, 16)), (F16, (10, 16)), (F16, (2, 1, 64, 16)), (F16, (2, 1, 64, 16)), (I32, (2,)),
      (I32, (2,)), (F16, (10, 48))]),
    ("attention_decode", "attention",
     {"dtype": "bfloat16", "heads": 2, "kv_heads": 2, "head_dim": 128, "seq": 1, "scale": 0.088, "phase": "decode"},
     [("bfloat16", (3, 256)), ("bfloat16", (3, 256)), ("bfloat16", (3, 256)), ("bfloat16", (3, 2, 64, 128)),
      ("bfloat16", (3, 2, 64, 128)), (I32, (3,)), (I32, (3,)), ("bfloat16", (3, 256))]),
]
TINY.append(("attention_decode_rope", "attention",
             {"dtype": "bfloat16", "heads": 2, "kv_heads": 1, "head_dim": 64, "seq": 1, "scale": 0.125, "phase": "decode",
              "rope": True, "norm_eps": 1e-6},
             [("bfloat16", (3, 128)), ("bfloat16", (3, 64)), ("bfloat16", (3, 64)), ("bfloat16", (3, 1, 64, 64)),
              ("bfloat16", (3, 1, 64, 64)), (I32, (3,)), (I32, (3,)), ("float32", (64, 32)), ("float32", (64, 32)),
              ("bfloat16", (64,)), ("bfloat16", (64,)), ("bfloat16", (3, 128))]))
# float32 multiplies in float32 (no TF32 cast); "mma": "tf32" is the --dtype tf32 opt-in
TINY += [
    ("matmul_silu_tf32", "matmul", {"dtype": "float32", "out_dtype": "float32", "epilogue": ("silu_mul",), "mma": "tf32"},
     [("float32", (37, 48)), ("float32", (48, 136)), ("float32", (48, 136)), ("float32", (37, 136))]),
    ("attention_prefill_fp32", "attention",
     {"dtype": "float32", "heads": 3, "kv_heads": 1, "head_dim": 16, "seq": 5, "scale": 0.25, "phase": "prefill"},
     [("float32", (10, 48)), ("float32", (10, 16)), ("float32", (10, 16)), ("float32", (2, 1, 64, 16)),
      ("float32", (2, 1, 64, 16)), (I32, (2,)), (I32, (2,)), ("float32", (10, 48))]),
    ("attention_prefill_tf32", "attention",
     {"dtype": "float32", "heads": 3, "kv_heads": 1, "head_dim": 16, "seq": 5, "scale": 0.25, "phase": "prefill",
      "mma": "tf32"},
     [("float32", (10, 48)), ("float32", (10, 16)), ("float32", (10, 16)), ("float32", (2, 1, 64, 16)),
      ("float32", (2, 1, 64, 16)), (I32, (2,)), (I32, (2,)), ("float32", (10, 48))]),
]
TEMPLATES = {"embed", "layernorm", "rmsnorm", "add_norm", "matmul", "gelu", "silu_mul", "add", "rope",
             "attention"}


def _specialized(case, sm):
    name, template, constants, operands = case
    shapes = [shape for _, shape in operands]
    full = {**constants, **choose_tiles(sm, template, constants, shapes)}
    return template, full, [(dtype, len(shape)) for dtype, shape in operands], shapes


def _export_all(sm, cache_dir):
    exported = {}
    for case in TINY:
        template, constants, signature, _ = _specialized(case, sm)
        started = time.perf_counter()
        kernel = export_cubin(template, constants, signature, sm, str(cache_dir))
        exported[case[0]] = (kernel, signature, time.perf_counter() - started)
    return exported


@pytest.fixture(scope="module")
def sm90(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("export_cache")
    return _export_all(90, cache_dir), cache_dir


def test_tiny_cases_cover_every_template():
    assert {case[1] for case in TINY} == TEMPLATES


def _check_kernel(kernel, signature):
    assert kernel.cubin[:4] == b"\x7fELF"
    assert kernel.symbol in symbols(kernel.cubin)
    assert kernel.block_threads > 0 and kernel.block_threads % 32 == 0
    assert kernel.block_threads == block_threads(kernel.cubin, kernel.symbol)
    # cutile_python_v1: per array a u64 pointer, then ndim u32 shape dims, then ndim u32 strides
    expected = [size for _, ndim in signature for size in [8] + [4] * (2 * ndim)]
    assert parameter_sizes(kernel.cubin, kernel.symbol) == expected


@pytest.mark.parametrize("name", [case[0] for case in TINY])
def test_every_template_exports_for_sm90(sm90, name):
    kernel, signature, _ = sm90[0][name]
    _check_kernel(kernel, signature)


@pytest.mark.parametrize("name", ["matmul_silu_fp32", "matmul_silu_tf32", "attention_prefill_fp32",
                                  "attention_prefill_tf32"])
def test_float32_multiplies_in_float32_unless_tf32_asked(name):
    case = next(c for c in TINY if c[0] == name)
    source = render(case[1], _specialized(case, 90)[1])
    assert ("tfloat32" in source) == name.endswith("tf32")
    assert "ct.mma(" in source


def test_alignment_facts_keep_the_calling_convention(tmp_path):
    case = next(c for c in TINY if c[0] == "matmul")
    template, constants, signature, _ = _specialized(case, 90)
    aligned = [(dtype, ndim, 256, (16,) * (ndim - 1)) for dtype, ndim in signature]
    kernel = export_cubin(template, constants, aligned, 90, str(tmp_path))
    _check_kernel(kernel, signature)


def test_cache_returns_the_same_bytes_without_compiling(sm90, monkeypatch):
    exported, cache_dir = sm90

    def no_compile(*args, **kwargs):
        raise AssertionError("a cached kernel was compiled again")

    monkeypatch.setattr(cutile_export, "_compile", no_compile)
    for case in TINY:
        template, constants, signature, _ = _specialized(case, 90)
        started = time.perf_counter()
        again = export_cubin(template, constants, signature, 90, str(cache_dir))
        assert time.perf_counter() - started < 0.5
        assert again == exported[case[0]][0]


def test_cache_key_changes_with_sm_source_and_signature():
    source = render("add", {"dtype": F16, "rows": 16, "block": 64})
    base = cutile_export.cache_key(source, [(F16, 2)] * 3, 90)
    assert base == cutile_export.cache_key(source, [(F16, 2)] * 3, 90)
    assert base != cutile_export.cache_key(source, [(F16, 2)] * 3, 100)
    assert base != cutile_export.cache_key(source, [("float32", 2)] * 3, 90)
    assert base != cutile_export.cache_key(render("add", {"dtype": F16, "rows": 8, "block": 64}), [(F16, 2)] * 3, 90)


def test_kernel_key_is_a_hashable_specialization():
    constants = {"dtype": F16, "out_dtype": F16, "epilogue": ["bias"], "tile_m": 16, "tile_n": 64, "tile_k": 128}
    first = KernelKey.of("matmul", constants, [(F16, 2, 256, [16])], 90)
    second = KernelKey.of("matmul", dict(reversed(list(constants.items()))), [(F16, 2, 256, (16,))], 90)
    assert first == second and hash(first) == hash(second)
    assert first != KernelKey.of("matmul", constants, [(F16, 2, 256, [16])], 100)


def test_export_failure_names_template_constants_and_sm(tmp_path):
    constants = {"dtype": F16, "rows": 16, "block": 48}  # tile shapes must be powers of two
    with pytest.raises(KernelExportError) as failure:
        export_cubin("add", constants, [(F16, 2)] * 3, 90, str(tmp_path))
    message = str(failure.value)
    assert "'add'" in message and "sm_90" in message and "'block': 48" in message


def test_unknown_template_and_missing_constant_are_export_errors():
    with pytest.raises(KernelExportError, match="no kernel template 'conv'"):
        render("conv", {})
    with pytest.raises(KernelExportError, match="layernorm"):
        render("layernorm", {"dtype": F16})


@pytest.mark.slow
@pytest.mark.parametrize("sm", [sm for sm in EVERY_SM if sm != 90])
def test_every_template_exports_for_other_sms(sm, tmp_path):
    for name, (kernel, signature, _) in _export_all(sm, tmp_path).items():
        _check_kernel(kernel, signature)
