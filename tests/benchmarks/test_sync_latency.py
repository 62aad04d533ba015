"""benchmarks/experimental/sync_latency.py's kernels export (cuTile's while loop and ordered atomics) and are
indexed where the device finds them without the toolchain."""

import json
import os

import pytest

pytest.importorskip("cuda.tile")

from benchmarks.experimental import sync_latency  # noqa: E402
from compiler import cutile_export  # noqa: E402


def test_export_compiles_and_indexes_every_kernel(tmp_path):
    sync_latency.export(90, str(tmp_path))
    with open(tmp_path / "sync-latency-sm_90.json", encoding="utf-8") as handle:
        index = json.load(handle)
    assert set(index) == {f"{kind}-{count}" for kind in ("boundary", "barrier") for count in sync_latency.CHAINS}
    for name, key in index.items():
        kind, count = name.split("-")
        image, symbol, threads = sync_latency._cached(kind, int(count), 90, str(tmp_path))
        assert symbol.startswith(f"sync_{kind}") and symbol in cutile_export.symbols(image) and threads > 0
        assert os.path.exists(tmp_path / f"{key}.cubin")
    assert index["barrier-8"] != index["barrier-72"]  # the barrier count is compiled in
    with pytest.raises(SystemExit, match="run --export-only 90"):
        sync_latency._cached("barrier", 8, 90, str(tmp_path / "elsewhere"))
