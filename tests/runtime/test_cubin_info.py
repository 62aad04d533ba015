"""runtime/cubin_info.py reads a kernel's registers, spills, shared memory and PTX from the cubins
tileiras writes, and gives None, never an exception, for images that are not such cubins."""

import random

import pytest

pytest.importorskip("cuda.tile")

from compiler.cutile_export import export_cubin  # noqa: E402
from runtime.cubin_info import instruction_mix, ptx, resources  # noqa: E402
from runtime.errors import PlanError  # noqa: E402
from runtime.inspect_plan import describe_kernel  # noqa: E402
from tests.compiler.test_kernel_cache import ADD  # noqa: E402

F16, BF16 = "float16", "bfloat16"
# Llama-3.2-1B's int4 gate+up at batch 1: 128 registers at two CTAs per SM, and it spills
INT4_GATE_UP = ("matmul", {"dtype": BF16, "epilogue": ["silu_mul"], "occupancy": 2, "out_dtype": BF16, "quant_group": 128,
                           "tile_k": 256, "tile_m": 1, "tile_n": 32, "weight_latency": 1, "weight_layout": "out_in",
                           "weight_quant": "int4"},
                [(BF16, 2, 256, (16,)), ("uint8", 2, 256, (16,)), (F16, 2, 256, (16,)), (F16, 2, 256, (16,)),
                 ("uint8", 2, 256, (16,)), (F16, 2, 256, (16,)), (F16, 2, 256, (16,)), (BF16, 2, 256, (16,))])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    return {name: export_cubin(*spec, 90, cache).cubin for name, spec in (("add", ADD), ("gate_up", INT4_GATE_UP))}


def test_resources_and_ptx_of_exported_kernels(images):
    add, gate_up = resources(images["add"]), resources(images["gate_up"])
    assert 1 <= add["registers"] <= 255 and add["local_bytes"] == 0
    assert gate_up["registers"] == 128 and gate_up["local_bytes"] > 0 and gate_up["shared_bytes"] > 0
    mix = instruction_mix(ptx(images["gate_up"]))
    assert mix["fma.rn"] > 0 and sum(mix.values()) > 1000
    assert not any(op.startswith(".") for op in mix)
    assert "add.f32" in instruction_mix(ptx(images["add"])) or "add.rn" in instruction_mix(ptx(images["add"]))


def test_images_that_are_not_cubins_give_none(images):
    assert resources(b"") is None and ptx(b"not an elf") is None
    assert resources(b"\x7fELF\x02\x01" + b"\xff" * 200) is None
    image = images["gate_up"]
    for cut in (16, 64, 200, len(image) // 3):
        assert resources(image[:cut]) is None
    rng = random.Random(0)
    for _ in range(200):  # corrupted bytes: a value or None, never an exception
        damaged = bytearray(image)
        for _ in range(16):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        used = resources(bytes(damaged))
        assert used is None or set(used) == {"registers", "local_bytes", "shared_bytes"}
        ptx(bytes(damaged))


def test_inspect_shows_one_kernels_resources_and_instruction_mix(images):
    cubin = {"symbol": "matmul_x", "block": [256, 1, 1], "image": images["gate_up"]}
    plan = {"kernels": [{"template": "matmul", "constants": dict(INT4_GATE_UP[1]), "cubins": {"sm_90": cubin}},
                        {"template": "matmul", "constants": {}, "cubins": {}}], "path": "p.plan"}
    lines = describe_kernel(plan, 0)
    assert "weight_quant=int4" in lines[0] and "256 threads a CTA" in lines[1]
    assert "128 registers" in lines[2] and "bytes of local memory (spills)" in lines[2] and "fma.rn" in lines[3]
    assert "no cubin" in describe_kernel(plan, 1)[1]
    with pytest.raises(PlanError, match="--kernel 2: the plan has kernels 0 to 1"):
        describe_kernel(plan, 2)
