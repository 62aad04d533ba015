"""The compile driver: graph YAML -> passes -> lowering -> (kernels) -> weights -> plan file."""

import collections
import dataclasses
import datetime
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import compiler
from compiler.graph_loader import load_graph
from compiler.lower import Lowering, program_shapes
from compiler.passes import PassContext, run_pipeline
from compiler.plan_writer import (check_output, discard_weights, remove_stale_temps, write_external_weights,
                                  write_plan)
from compiler.tiles import SHIPPED, TileRules
from compiler.weights import CheckpointWeights, RandomWeights, build_weight, checkpoint_names, encode, quantized_parts

EMBED_LIMIT = 1 << 30  # weights above this go to a sibling .safetensors unless told otherwise
BUILD_BUDGET = 1 << 31  # float32 bytes of weights being built at once (peak RSS stays under 4 GB)
DEFAULT_MAX_SEQ = 256  # without --max-seq: this, or the model's learned positions if fewer
DEFAULT_BUCKET = 64
MAX_BATCH = 1024
MAX_SEQ = 1 << 20
MAX_BUCKETS = 16
MAX_DEVICE_BYTES = 1 << 40  # a plan needing more device memory than this is a mistake


@dataclass
class CompileOptions:
    """Everything `cgc compile` takes besides the graph file."""

    preset: str | None = None
    checkpoint: str | None = None
    overrides: dict = field(default_factory=dict)
    dtype: str = "float32"
    sms: tuple = ()
    max_batch: int = 1
    max_seq: int | None = None          # None: DEFAULT_MAX_SEQ clamped to the model's positions
    prefill_buckets: tuple | None = None  # None: (DEFAULT_BUCKET,) clamped to max_seq
    seed: int = 0
    weights_storage: str = "auto"  # auto | embedded | external
    tokenizer: str | None = None   # dir with tokenizer.json or vocab.json + merges.txt; default: checkpoint
    cache_dir: str | None = None
    tile_rules: TileRules = SHIPPED  # tiling and scheduling choices (compiler/tiles.py; cgc compile --tiles)
    targets: tuple = ()  # compiler.targets.Target per SM (--gpu, --sm SM:COUNT); default: the sms' reference devices
    quant: str | None = None  # int8 | int4 | fp8 (--quant; formats: runtime/quant.py)
    group_size: int = 128     # int4 groups along K (--group-size)
    prompt_logits: bool = False  # prefill programs output every prompt position's logits (--prompt-logits)


def compile_plan(graph_path, output_path, options, log=None):
    """Compile `graph_path` into a plan at `output_path`; returns the plan body written."""
    log = log or (lambda message: None)
    started = time.perf_counter()
    _check_options(options)
    options, targets = _resolve_targets(options)
    check_output(output_path)
    remove_stale_temps(os.path.dirname(os.path.abspath(output_path)))
    options, exact_scales = _checkpoint_quantization(options, log)
    storage_dtype = "float32" if options.dtype == "tf32" else options.dtype
    graph = load_graph(graph_path, options.preset, options.checkpoint, options.overrides, storage_dtype)
    options = _resolve_lengths(options, graph, log)
    log(f"loaded {graph.source}: {len(graph.ops)} ops, {len(graph.weights)} checkpoint tensors")
    context = PassContext(max_batch=options.max_batch, sms=tuple(options.sms), tile_rules=options.tile_rules,
                          quant=(options.quant, options.group_size, exact_scales) if options.quant else None)
    graph = run_pipeline(graph, context, progress=lambda name: log(f"pass {name}"))
    lowering = Lowering(graph, options.max_batch, options.max_seq, options.tile_rules, options.prompt_logits)
    programs = {shape.name: lowering.lower_program(shape)
                for shape in program_shapes(options.max_batch, options.prefill_buckets)}
    _check_device_bytes(lowering, options)
    if options.dtype == "tf32":
        _use_tf32(lowering.kernels)
    log(f"lowered {len(programs)} programs, {sum(len(p['launches']) for p in programs.values())} launches, "
        f"{len(lowering.kernels)} distinct kernels")
    toolchains = []
    if options.sms:
        from compiler.specialize import specialize_kernels
        toolchains = specialize_kernels(lowering.kernels, programs, options.sms, options.cache_dir, log,
                                        options.tile_rules)
    tokenizer = _tokenizer(options, graph.config.get("vocab_size"), log)
    source = CheckpointWeights(options.checkpoint) if options.checkpoint else RandomWeights(options.seed)
    if options.checkpoint:
        source.check_names(checkpoint_names(lowering.weights, lowering.stored))
    weights = _store_weights(lowering, source, output_path, options, log)
    body = {
        "compiler": {"name": "cgc", "version": compiler.__version__, **_toolchain_fields(toolchains)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": graph.name, "family": graph.family, "graph_file": os.path.basename(graph.source),
                  "dtype": graph.dtype, "config": _plain(graph.config)},
        "targets": sorted(options.sms),
        "devices": {f"sm_{target.sm}": target.record() for target in targets},
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
        "quantization": _quantization(graph, options, source),
    }
    try:
        size = write_plan(body, output_path)
    except BaseException:
        discard_weights(output_path, weights)
        raise
    log(f"wrote {output_path} ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return body


def _resolve_targets(options):
    """(options with sms and the tile rules' SM counts taken from the targets, the targets)."""
    from compiler.targets import target_for_sm
    targets = tuple(options.targets) or tuple(target_for_sm(sm) for sm in options.sms)
    counts = {**options.tile_rules.sm_counts, **{target.sm: target.sm_count for target in targets}}
    rules = dataclasses.replace(options.tile_rules, sm_counts=counts)
    return dataclasses.replace(options, sms=tuple(target.sm for target in targets), tile_rules=rules), targets


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
    return _with_chat_template(data, directory, log)


def _with_chat_template(data, directory, log):
    from compiler.chat_template import read_chat_template
    fields = read_chat_template(directory)
    if "chat_template" in fields:
        log(f"chat template: {len(fields['chat_template'])} characters")
    return {**data, **fields}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(options):
    from compiler.errors import CompileError
    if not _is_int(options.max_batch) or not 1 <= options.max_batch <= MAX_BATCH:
        raise CompileError(f"--max-batch must be an integer in 1..{MAX_BATCH}, got {options.max_batch!r}")
    if options.max_seq is not None and (not _is_int(options.max_seq) or not 1 <= options.max_seq <= MAX_SEQ):
        raise CompileError(f"--max-seq must be an integer in 1..{MAX_SEQ}, got {options.max_seq!r}")
    if options.prefill_buckets is not None:
        buckets = tuple(options.prefill_buckets)
        if not buckets or len(set(buckets)) > MAX_BUCKETS:
            raise CompileError(f"--prefill-buckets needs 1..{MAX_BUCKETS} lengths, got {len(set(buckets))}")
        for bucket in buckets:
            if not _is_int(bucket) or not 1 <= bucket <= (options.max_seq or MAX_SEQ):
                raise CompileError(f"prefill bucket {bucket!r} must be an integer between 1 and --max-seq "
                                   f"{options.max_seq or MAX_SEQ}")
    if options.dtype not in ("float32", "float16", "bfloat16", "tf32"):
        raise CompileError(f"--dtype {options.dtype!r} is not one of float32, tf32, float16, bfloat16")
    _check_quant(options)


def _check_quant(options):
    from compiler.errors import CompileError
    from compiler.targets import FP8_SMS
    from runtime.quant import GROUP_SIZES, MODES
    if options.quant is None:
        return
    if options.quant not in MODES:
        raise CompileError(f"--quant {options.quant!r} is not one of {', '.join(MODES)}")
    if options.quant == "int4" and options.group_size not in GROUP_SIZES:
        raise CompileError(f"--group-size {options.group_size!r} is not one of {', '.join(map(str, GROUP_SIZES))}")
    lacking = [sm for sm in options.sms if sm not in FP8_SMS]
    if options.quant == "fp8" and lacking:
        raise CompileError(f"--quant fp8: sm_{lacking[0]} has no fp8 (SMs with fp8: "
                           f"{', '.join(map(str, FP8_SMS))}); use --quant int8 there")


def _checkpoint_quantization(options, log):
    """(options, int4 scale dtype or None): a pre-quantized checkpoint (compiler/prequantized.py)
    compiles as --quant int4 with its own group size, its scales kept exactly (float32, since
    min = -zero * scale need not fit float16); another --quant or --group-size is refused."""
    from compiler.errors import CompileError
    from compiler.prequantized import read_quantization_config
    config = read_quantization_config(options.checkpoint) if options.checkpoint else None
    if config is None:
        return options, None
    if options.quant not in (None, "int4") or (options.quant == "int4" and options.group_size != config.group_size):
        raise CompileError(f"{options.checkpoint}: the checkpoint is {config.method.upper()} int4 in groups of "
                           f"{config.group_size}; compile it without --quant (or --quant int4 --group-size "
                           f"{config.group_size})")
    log(f"{config.method.upper()} checkpoint: int4 in groups of {config.group_size}, codes and scales kept as stored")
    return dataclasses.replace(options, quant="int4", group_size=config.group_size), "float32"


def _quantization(graph, options, source):
    """The plan's quantization record: the mode asked for, what each linear took, and where the
    codes came from ("compile", or a pre-quantized checkpoint's method)."""
    if options.quant is None:
        return None
    linears = {op.name: op.attrs["quant"] for op in graph.ops if "quant" in op.attrs}
    prequantized = getattr(source, "quantization", None)
    return {"mode": options.quant, "group_size": options.group_size if options.quant == "int4" else None,
            "linears": linears, "source": prequantized.method if prequantized else "compile"}


def learned_positions(graph):
    """The longest sequence the model was trained for: its learned position table's rows, else
    its config's max_position_embeddings, else None."""
    tables = [op.attrs["positions"] for op in graph.ops if op.kind == "embed" and op.attrs.get("positions")]
    if tables:
        return min(tables)
    value = graph.config.get("max_position_embeddings")
    return value if _is_int(value) and value > 0 else None


def _resolve_lengths(options, graph, log):
    """Fill in the default max sequence (clamped to the model's positions) and prefill bucket."""
    max_seq, buckets = options.max_seq, options.prefill_buckets
    if max_seq is None:
        positions = learned_positions(graph)
        max_seq = min(DEFAULT_MAX_SEQ, positions) if positions else DEFAULT_MAX_SEQ
        if max_seq < DEFAULT_MAX_SEQ:
            log(f"max sequence {max_seq}: the model's {positions} positions (--max-seq not given)")
    if buckets is None:
        buckets = (min(DEFAULT_BUCKET, max_seq),)
    resolved = dataclasses.replace(options, max_seq=max_seq, prefill_buckets=tuple(buckets))
    _check_options(resolved)
    return resolved


TF32_TEMPLATES = ("matmul", "attention")


def _use_tf32(kernels):
    """--dtype tf32: float32 storage, but matmul and attention tiles multiply on TF32 tensor cores
    (10-bit mantissa: logits ~1e-3 relative from float32). The NumPy executor ignores it."""
    for kernel in kernels:
        if kernel["template"] in TF32_TEMPLATES:
            kernel["constants"]["mma"] = "tf32"


def _check_device_bytes(lowering, options):
    from compiler.errors import CompileError
    total = (lowering.arena_bytes + lowering.io_bytes + lowering.kv_bytes + lowering.scratch_bytes
             + lowering.weights_bytes)
    if total > MAX_DEVICE_BYTES:
        raise CompileError(f"the plan would need {total / 2**30:.0f} GiB of device memory (more than "
                           f"{MAX_DEVICE_BYTES >> 30} GiB); lower --max-batch ({options.max_batch}) or --max-seq "
                           f"({options.max_seq}), or the model's sizes")


def _store_weights(lowering, source, output_path, options, log):
    table = []
    for name in lowering.stored:
        weight = lowering.weights[name]
        offset, nbytes = lowering.weight_layout[name]
        entry = {"name": name, "shape": list(weight.shape), "dtype": weight.dtype, "offset": offset,
                 "nbytes": nbytes, "row_stride": lowering.row_stride(name), "recipe": _plain(weight.recipe)}
        if weight.recipe[0] == "quantize":
            _, base, mode, group_size, _, part, _ = weight.recipe
            entry["quant"] = {"mode": mode, "group_size": group_size, "part": part, "of": base}
        table.append(entry)
    encoded = _encoded_weights(lowering, source)
    total = lowering.weights_bytes
    external = options.weights_storage == "external" or (options.weights_storage == "auto" and total > EMBED_LIMIT)
    if external:
        specs = {entry["name"]: (entry["dtype"], entry["shape"]) for entry in table}
        file_name, digest = write_external_weights(output_path, specs, encoded)
        log(f"wrote weights to {file_name} ({total / 1e6:.1f} MB)")
        return {"storage": "external", "file": file_name, "sha256": digest, "table": table}
    return {"storage": "embedded", "blob": region_image(table, encoded, total).tobytes(), "table": table}


def _encoded_weights(lowering, source):
    """Each stored weight in storage bytes, in table order, built and encoded on every core with
    at most BUILD_BUDGET bytes of float32 in flight (a 7B model's are 15 GB; its largest is 2.2).
    The parts of a quantized weight (adjacent in the table) are made by one quantization."""
    weights = lowering.weights

    def build(unit):
        recipe = weights[unit[0]].recipe
        if recipe[0] == "quantize":
            parts = quantized_parts(weights, recipe, source)
            return [encode(parts[weights[name].recipe[5]], weights[name].dtype) for name in unit]
        return [encode(build_weight(weights, unit[0], source), weights[unit[0]].dtype)]

    workers = os.cpu_count() or 1
    pending, in_flight = collections.deque(), 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for unit in _build_units(weights, lowering.stored):
            size = 4 * math.prod(weights[weights[unit[0]].recipe[1]].shape if weights[unit[0]].recipe[0] == "quantize"
                                 else weights[unit[0]].shape)
            while pending and (in_flight + size > BUILD_BUDGET or len(pending) >= workers):
                done, done_size = pending.popleft()
                in_flight -= done_size
                yield from done.result()
            pending.append((pool.submit(build, unit), size))
            in_flight += size
        while pending:
            yield from pending.popleft()[0].result()


def _build_units(weights, names):
    """`names` in order, grouped: runs of parts quantized from the same weight form one unit."""
    units = []
    for name in names:
        recipe = weights[name].recipe
        previous = weights[units[-1][-1]].recipe if units else None
        if recipe[0] == "quantize" and previous is not None and previous[0] == "quantize" and previous[1] == recipe[1]:
            units[-1].append(name)
        else:
            units.append([name])
    return units


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


def _toolchain_fields(toolchains):
    """cuda-tile and tileiras versions of the cubins' producer (from the kernel cache entries, so a
    plan built from a cache filled elsewhere names that machine's toolchain); None without cubins."""
    def versions(package):
        found = sorted({toolchain.get(package) or "?" for toolchain in toolchains})
        return ", ".join(found) if found else None
    return {"cuda_tile": versions("cuda-tile"), "tileiras": versions("nvidia-cuda-tileiras")}


def stderr_log(message):
    """Progress printer for the CLI."""
    print(f"cgc: {message}", file=sys.stderr, flush=True)
