"""The compile driver: graph YAML -> passes -> lowering -> (kernels) -> weights -> plan file."""

import datetime
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import compiler
from compiler.graph_loader import load_graph
from compiler.lower import Lowering, program_shapes
from compiler.passes import run_pipeline
from compiler.plan_writer import (check_output, discard_weights, remove_stale_temps, write_external_weights,
                                  write_plan)
from compiler.weights import CheckpointWeights, RandomWeights, build_weight, checkpoint_names, encode

EMBED_LIMIT = 1 << 30  # weights above this go to a sibling .safetensors unless told otherwise


@dataclass
class CompileOptions:
    """Everything `cgc compile` takes besides the graph file."""

    preset: str | None = None
    checkpoint: str | None = None
    overrides: dict = field(default_factory=dict)
    dtype: str = "float32"
    sms: tuple = ()
    max_batch: int = 1
    max_seq: int = 256
    prefill_buckets: tuple = (64,)
    seed: int = 0
    weights_storage: str = "auto"  # auto | embedded | external
    tokenizer: str | None = None   # dir with tokenizer.json or vocab.json + merges.txt; default: checkpoint
    cache_dir: str | None = None


def compile_plan(graph_path, output_path, options, log=None):
    """Compile `graph_path` into a plan at `output_path`; returns the plan body written."""
    log = log or (lambda message: None)
    started = time.perf_counter()
    _check_options(options)
    check_output(output_path)
    remove_stale_temps(os.path.dirname(os.path.abspath(output_path)))
    graph = load_graph(graph_path, options.preset, options.checkpoint, options.overrides, options.dtype)
    log(f"loaded {graph.source}: {len(graph.ops)} ops, {len(graph.weights)} checkpoint tensors")
    graph = run_pipeline(graph, progress=lambda name: log(f"pass {name}"), max_batch=options.max_batch,
                         sms=options.sms)
    lowering = Lowering(graph, options.max_batch, options.max_seq)
    programs = {shape.name: lowering.lower_program(shape)
                for shape in program_shapes(options.max_batch, options.prefill_buckets)}
    log(f"lowered {len(programs)} programs, {sum(len(p['launches']) for p in programs.values())} launches, "
        f"{len(lowering.kernels)} distinct kernels")
    if options.sms:
        from compiler.specialize import specialize_kernels
        specialize_kernels(lowering.kernels, programs, options.sms, options.cache_dir, log)
    tokenizer = _tokenizer(options, graph.config.get("vocab_size"), log)
    source = CheckpointWeights(options.checkpoint) if options.checkpoint else RandomWeights(options.seed)
    if options.checkpoint:
        source.check_names(checkpoint_names(lowering.weights, lowering.stored))
    weights = _store_weights(lowering, source, output_path, options, log)
    body = {
        "compiler": {"name": "cgc", "version": compiler.__version__, "cuda_tile": _cuda_tile_version()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": graph.name, "family": graph.family, "graph_file": os.path.basename(graph.source),
                  "dtype": graph.dtype, "config": _plain(graph.config)},
        "targets": sorted(options.sms),
        "limits": {"max_batch": options.max_batch, "max_seq": options.max_seq,
                   "prefill_buckets": sorted(set(options.prefill_buckets))},
        "regions": {"arena": lowering.arena_bytes, "io": lowering.io_bytes, "kv": lowering.kv_bytes,
                    "scratch": lowering.scratch_bytes,
                    "weights": lowering.weights_bytes},
        "buffers": {key: graph.buffers[key] for key in ("arena_row_bytes", "naive_row_bytes")},
        "weights": weights,
        "generation": ({key: lowering.generation[key] for key in ("history", "params", "options", "eos")}
                       if lowering.generation else None),
        "kernels": lowering.kernels,
        "programs": programs,
        "passes": [list(entry) for entry in graph.pass_log],
        "tokenizer": tokenizer,
    }
    try:
        size = write_plan(body, output_path)
    except BaseException:
        discard_weights(output_path, weights)
        raise
    log(f"wrote {output_path} ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return body


def _tokenizer(options, vocab_size, log):
    from compiler.tokenizer_import import describe, read_tokenizer
    directory = options.tokenizer or options.checkpoint
    if directory is None:
        return None
    data = read_tokenizer(directory, vocab_size if isinstance(vocab_size, int) else None)
    if data is None:
        if options.tokenizer:
            from compiler.errors import CheckpointError
            raise CheckpointError(f"{directory}: no tokenizer.json, nor vocab.json + merges.txt")
        log(f"{directory} has no tokenizer files: the plan takes token ids only")
        return None
    log(describe(data))
    return data


def _check_options(options):
    from compiler.errors import CompileError
    if options.max_batch < 1 or options.max_seq < 1:
        raise CompileError(f"--max-batch and --max-seq must be positive (got {options.max_batch}, {options.max_seq})")
    for bucket in options.prefill_buckets:
        if not 1 <= bucket <= options.max_seq:
            raise CompileError(f"prefill bucket {bucket} must be between 1 and --max-seq {options.max_seq}")


def _store_weights(lowering, source, output_path, options, log):
    table = []
    for name in lowering.stored:
        weight = lowering.weights[name]
        offset, nbytes = lowering.weight_layout[name]
        table.append({"name": name, "shape": list(weight.shape), "dtype": weight.dtype, "offset": offset,
                      "nbytes": nbytes, "row_stride": lowering.row_stride(name), "recipe": _plain(weight.recipe)})
    encoded = (encode(build_weight(lowering.weights, name, source), lowering.weights[name].dtype)
               for name in lowering.stored)
    total = lowering.weights_bytes
    external = options.weights_storage == "external" or (options.weights_storage == "auto" and total > EMBED_LIMIT)
    if external:
        specs = {entry["name"]: (entry["dtype"], entry["shape"]) for entry in table}
        file_name, digest = write_external_weights(output_path, specs, encoded)
        log(f"wrote weights to {file_name} ({total / 1e6:.1f} MB)")
        return {"storage": "external", "file": file_name, "sha256": digest, "table": table}
    return {"storage": "embedded", "blob": region_image(table, encoded, total).tobytes(), "table": table}


def region_image(table, arrays, total):
    """The weights region as bytes: each table entry's array (from `arrays`, in order) at its offset."""
    from runtime.plan import place_weight
    image = np.zeros(total, dtype=np.uint8)
    for entry, array in zip(table, arrays):
        place_weight(image, entry, array)
    return image


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cuda_tile_version():
    try:
        from importlib.metadata import version
        return version("cuda-tile")
    except Exception:  # not installed: a CPU-only compile
        return None


def stderr_log(message):
    """Progress printer for the CLI."""
    print(f"cgc: {message}", file=sys.stderr, flush=True)
