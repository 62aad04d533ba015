"""Specialize kernel specs per target SM and launch shape, and export their cubins.

For every launch and target SM: pick tile constants (the template's kernel module in
compiler/kernels/, under the plan's tile rules, compiler/tiles.py), make the SM-specific
spec (generic constants + tiles), export it once through cuTile (compiler/cutile_export.py, with
its on-disk cache), and record the launch's grid. Results land in the plan as extra kernel specs
(with `sm` set and one cubin each) and as `launch["targets"]["sm_NN"] = {kernel, grid}`; the
generic specs stay for the NumPy executor.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor

from compiler.errors import CompileError
from compiler.kernels import choose_tiles, launch_grid
from compiler.tiles import SHIPPED
from runtime.cubin_info import resources

DEFAULT_CACHE = os.path.join("artifacts", "cache")
REGION_ALIGN = 256   # the runtime's region allocations are at least this aligned (bytes)
STRIDE_FACT_CAP = 16  # elements: enough to prove 16-byte strides for every dtype


def _power_of_two_dividing(value, cap):
    if value == 0:
        return cap
    result = 1
    while result < cap and value % (result * 2) == 0:
        result *= 2
    return result


def alignment_facts(operand):
    """(dtype, ndim, base alignment in bytes, stride divisibility per leading dim) of an operand.

    Exported kernels may only assume what holds for every launch sharing them; these facts let
    cuTile prove the 16-byte alignment its bulk copies (TMA) need."""
    base = _power_of_two_dividing(operand["offset"], REGION_ALIGN)
    strides = [_power_of_two_dividing(s, STRIDE_FACT_CAP) for s in operand["strides"][:-1]]
    return [operand["dtype"], len(operand["shape"]), base, strides]


def specialize_kernels(kernels, programs, sms, cache_dir=None, log=None, rules=SHIPPED):
    """Add SM-specific specs with cubins to `kernels`, and per-target grids to launches (tiles by
    TileRules `rules`); returns the toolchains ({package: version}) that produced the cubins."""
    from compiler import cutile_export
    log = log or (lambda message: None)
    cache_dir = cache_dir or DEFAULT_CACHE
    generic_count = len(kernels)
    index_of = {}
    for program in programs.values():
        for launch in program["launches"]:
            generic = kernels[launch["kernel"]]
            shapes = [tuple(arg["shape"]) for arg in launch["args"]]
            launch["targets"] = {}
            for sm in sms:
                tiles = choose_tiles(sm, generic["template"], generic["constants"], shapes, rules)
                constants = {**generic["constants"], **tiles}
                signature = [alignment_facts(arg) for arg in launch["args"]]
                key = (sm, generic["template"], repr(sorted(constants.items())), repr(signature))
                if key not in index_of:
                    index_of[key] = len(kernels)
                    kernels.append({"template": generic["template"], "constants": dict(sorted(constants.items())),
                                    "signature": signature, "sm": sm, "cubins": {}})
                spec = kernels[index_of[key]]
                grid = launch_grid(spec["template"], spec["constants"], shapes)
                launch["targets"][f"sm_{sm}"] = {"kernel": index_of[key], "grid": [int(g) for g in grid]}
    pending = kernels[generic_count:]
    log(f"exporting {len(pending)} kernels for {', '.join(f'sm_{sm}' for sm in sms)} (cache: {cache_dir})")
    started = time.perf_counter()
    done, missing, toolchains = [0], [], set()

    def export(spec):
        operands = [tuple(entry[:3]) + (tuple(entry[3]),) for entry in spec["signature"]]
        try:
            exported = cutile_export.export_cubin(spec["template"], spec["constants"], operands, spec["sm"], cache_dir)
        except cutile_export.KernelNotCachedError:
            missing.append(spec)
            return
        except cutile_export.KernelExportError as exc:
            raise CompileError(str(exc)) from None
        spec["cubins"][f"sm_{spec['sm']}"] = {"symbol": exported.symbol, "block": [exported.block_threads, 1, 1],
                                              "image": exported.cubin}
        toolchains.add(exported.toolchain)
        done[0] += 1
        log(f"[{done[0]}/{len(pending)}] {spec['template']} sm_{spec['sm']}")

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        list(pool.map(export, pending))
    if missing:
        raise CompileError(_missing_message(missing, len(pending), cache_dir))
    log(f"kernels ready in {time.perf_counter() - started:.1f} s")
    spilling = _spilling(pending)
    if spilling:
        log(f"{len(spilling)} of {len(pending)} kernels spill registers to local memory ({', '.join(spilling)}; "
            f"`cgc inspect PLAN` lists each kernel's registers and spills)")
    return [dict(toolchain) for toolchain in sorted(toolchains)]


def _spilling(specs):
    """'template sm_N' of each spec whose cubin spills registers (runtime/cubin_info.py)."""
    names = []
    for spec in specs:
        for target, cubin in spec["cubins"].items():
            used = resources(cubin["image"])
            if used is not None and used["local_bytes"]:
                names.append(f"{spec['template']} {target}")
    return sorted(names)


def _missing_message(missing, total, cache_dir):
    """One line naming the kernels a cache without cuda-tile could not supply."""
    counts = {}
    for spec in missing:
        name = f"{spec['template']} sm_{spec['sm']}"
        counts[name] = counts.get(name, 0) + 1
    listed = ", ".join(f"{name} x{count}" if count > 1 else name for name, count in sorted(counts.items()))
    return (f"{len(missing)} of {total} kernels are not in the kernel cache {cache_dir} and cuda-tile is not "
            f"installed here ({listed}); compile the same plan once where cuda-tile is installed "
            f"(pip install 'cuda-tile[tileiras]') and copy that cache here, or install cuda-tile")
