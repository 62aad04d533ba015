"""The kernel cache is keyed on the kernel, not on what the reading machine has installed: a
machine without cuda-tile compiles plans from a cache filled elsewhere, and names the kernels a
cache lacks."""

import pytest

pytest.importorskip("cuda.tile")

from compiler import cutile_export  # noqa: E402
from compiler.compile import CompileOptions, compile_plan  # noqa: E402
from compiler.errors import CompileError  # noqa: E402
from compiler.cutile_export import KernelNotCachedError, export_cubin  # noqa: E402
from runtime.plan import load_plan  # noqa: E402

F16 = "float16"
ADD = ("add", {"dtype": F16, "rows": 16, "block": 64}, [(F16, 2)] * 3)


@pytest.fixture
def no_cuda_tile(monkeypatch):
    """This process as on a GPU machine that only runs plans: no cuda-tile to import or to ask."""
    monkeypatch.setattr(cutile_export, "toolchain_versions", lambda: {"cuda-tile": None, "nvidia-cuda-tileiras": None})
    monkeypatch.setitem(__import__("sys").modules, "cuda.tile", None)

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled without cuda-tile")

    monkeypatch.setattr(cutile_export, "_compile", no_compile)


def test_cache_key_is_the_kernel_alone(monkeypatch):
    source = cutile_export.render(ADD[0], ADD[1])
    key = cutile_export.cache_key(source, ADD[2], 90)
    monkeypatch.setattr(cutile_export, "toolchain_versions", lambda: {"cuda-tile": None, "nvidia-cuda-tileiras": None})
    assert cutile_export.cache_key(source, ADD[2], 90) == key


def test_a_cache_filled_with_cuda_tile_serves_a_machine_without_it(tmp_path, monkeypatch, request):
    filled = export_cubin(*ADD, 90, str(tmp_path))
    assert dict(filled.toolchain)["cuda-tile"] == cutile_export.toolchain_versions()["cuda-tile"]
    request.getfixturevalue("no_cuda_tile")
    again = export_cubin(*ADD, 90, str(tmp_path))
    assert again == filled
    with pytest.raises(KernelNotCachedError, match="sm_100"):
        export_cubin(*ADD, 100, str(tmp_path))


def test_an_entry_from_another_toolchain_is_compiled_again_where_cuda_tile_is_installed(tmp_path, monkeypatch):
    filled = export_cubin(*ADD, 90, str(tmp_path))
    installed = cutile_export.toolchain_versions()
    monkeypatch.setattr(cutile_export, "toolchain_versions", lambda: {**installed, "nvidia-cuda-tileiras": "0.0-other"})
    again = export_cubin(*ADD, 90, str(tmp_path))
    assert dict(again.toolchain)["nvidia-cuda-tileiras"] == "0.0-other" and again.cubin[:4] == filled.cubin[:4]


def _options(cache_dir):
    return CompileOptions(preset="nano", dtype="float16", sms=(90,), max_seq=64, prefill_buckets=(16,),
                          cache_dir=str(cache_dir))


@pytest.mark.slow
def test_compile_without_cuda_tile_uses_a_filled_cache_and_names_missing_kernels(tmp_path, request):
    first = compile_plan("graphs/gpt2.yaml", str(tmp_path / "a.plan"), _options(tmp_path / "cache"))
    producer = cutile_export.toolchain_versions()["cuda-tile"]
    request.getfixturevalue("no_cuda_tile")
    second = compile_plan("graphs/gpt2.yaml", str(tmp_path / "b.plan"), _options(tmp_path / "cache"))
    assert [k["cubins"] for k in first["kernels"]] == [k["cubins"] for k in second["kernels"]]
    assert second["compiler"]["cuda_tile"] == producer
    assert load_plan(str(tmp_path / "b.plan"))["compiler"]["tileiras"]
    assert second["devices"] == {"sm_90": {"sm_count": 132, "device": "h100", "title": "NVIDIA H100 SXM",
                                           "bandwidth_gbs": 3350}}
    with pytest.raises(CompileError) as failure:
        compile_plan("graphs/gpt2.yaml", str(tmp_path / "c.plan"), _options(tmp_path / "empty-cache"))
    message = str(failure.value)
    assert "not in the kernel cache" in message and "matmul sm_90" in message and "cuda-tile" in message
    assert not (tmp_path / "c.plan").exists()
