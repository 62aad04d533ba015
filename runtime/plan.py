"""The plan file: format, validation, encoding. This docstring is the format's reference.

A plan file is a msgpack map (the envelope):
    format       "cgc-plan"
    version      4 (a loader refuses any other version, naming both; 2 added `generation`,
                 the `scratch` region and the `sample` launch ending each program; 3 stores the
                 tokenizer as a tokenizer.json; 4 adds quantized weights: int8 / uint8 /
                 float8_e4m3 dtypes, `quantization` and the weights table's `quant` records)
    body_sha256  hex sha256 of `body`
    body         bytes: msgpack of the plan body below
Body (all plain maps, lists, strings, numbers and bytes):
    compiler     {name: "cgc", version, cuda_tile, tileiras: versions of the toolchain that produced
                 the cubins (recorded in the kernel cache entries), or None in CPU-only plans}
    created      ISO-8601 UTC time of compilation
    model        {name, family, graph_file, dtype, config: {symbol: value}}
    targets      [SM numbers the kernels were exported for, e.g. 90]; may be empty (CPU only)
    devices      {"sm_90": {sm_count, device, title, bandwidth_gbs}}: per target the SM count its
                 tile rules assumed and the device named at compile time (device, title and
                 bandwidth None for a bare SM count)
    limits       {max_batch, max_seq, prefill_buckets: [S, ...]}
    regions      {arena, io, kv, scratch, weights}: bytes of each device allocation (scratch:
                 split decode attention's partial results, the prefill LM head's input rows,
                 int4 prefill's dequantized weight: each written before it is read; 0 in plans
                 that need none)
    buffers      {arena_row_bytes, naive_row_bytes}: activation bytes per token row, packed
                 vs. without reuse (a program with T rows uses T * arena_row_bytes)
    generation   None (a graph without logits), or the on-device sampler's state operands in
                 the io region: {history [B, P] i32 (every token by position), params [B, 4] f32
                 (temperature, top_p, repetition_penalty, -), options [B, 4] i32 (top_k, seed,
                 prompt_len, cancel), eos [8] i32 (padded with -1)}. The decode program's inputs
                 are what every program's final `sample` launch writes.
    weights      {storage: "embedded" | "external", blob: bytes (embedded: the weights region
                 image), file: name beside the plan (external, a .safetensors, tensors
                 unpadded), sha256 of that file, table: [{name, shape, dtype, offset (in the
                 region), nbytes, row_stride (elements; 2-D rows are padded to 128 bytes), recipe,
                 quant (quantized parts only): {mode, group_size, part, of}}]} (runtime/quant.py)
    kernels      [{template, constants, signature: [[dtype, ndim], ...], sm: None | 90,
                   cubins: {"sm_90": {symbol, block: [x, y, z], image: bytes}}}]
                 Generic specs (sm None, no cubins) are what the NumPy executor runs; each
                 SM-specific spec adds the tile constants chosen for that SM and launch shape
                 and holds the one cubin exported for it.
    programs     {name: {batch, seq, inputs: {tokens, start_pos, seq_lens: operand},
                         outputs: {logits: operand}, launches: [launch]}}
                 prefill programs are "prefill_<S>", the decode program is "decode".
    passes       [[pass name, what it changed], ...]
    tokenizer    None, or {tokenizer_json: the checkpoint's tokenizer.json text, eos_token_ids: [int],
                 optional chat_template (the checkpoint's Jinja chat template, rendered by the
                 server), bos_token, eos_token (the special-token texts the template refers to):
                 str or None} (runtime/tokenizer.py)
    quantization None, or {mode: "int8" | "int4" | "fp8" (--quant), group_size (int4) or None,
                 linears: {linear op name: {mode, group_size}}, source: "compile" (quantized by
                 cgc) or "gptq" / "awq" (codes of a pre-quantized checkpoint, kept)} (runtime/quant.py)
Operand: {region, offset (bytes), shape: [..], strides: [.. in elements], dtype}.
Launch:  {kernel: index of its generic spec, op: graph op name, args: [operand, ...],
          targets: {"sm_90": {kernel: index of the SM-specific spec, grid: [x, y, z]}, ...}}.
Kernel operand order and semantics: templates/README.md.
Layout constants of operands (row-statistics and argmax groups, EOS slots): runtime/plan_layout.py.
"""

import hashlib
import os

import msgpack

from runtime.errors import PlanError

PLAN_FORMAT = "cgc-plan"
PLAN_VERSION = 4
REGIONS = ("arena", "io", "kv", "scratch", "weights")


def encode_plan(body):
    """Envelope bytes for a plan body dict (used by the compiler's plan writer)."""
    body_bytes = msgpack.packb(body, use_bin_type=True)
    envelope = {"format": PLAN_FORMAT, "version": PLAN_VERSION,
                "body_sha256": hashlib.sha256(body_bytes).hexdigest(), "body": body_bytes}
    return msgpack.packb(envelope, use_bin_type=True)


def _unpack(data, path, what):
    """msgpack with bounded sizes (no string over 256 MiB, no list or map over 16 M entries); the
    C unpacker also bounds nesting depth (StackError)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, max_str_len=MAX_STR_BYTES,
                               max_bin_len=len(data), max_array_len=MAX_ENTRIES, max_map_len=MAX_ENTRIES,
                               max_ext_len=0)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise PlanError(f"{path}: not a cgc plan, or truncated or corrupted ({what}: {type(exc).__name__})") from None


MAX_STR_BYTES = 256 << 20
MAX_ENTRIES = 1 << 24


def decode_plan(data, path="<plan>"):
    """Check the envelope of `data` and return the validated body dict."""
    envelope = _unpack(data, path, "envelope")
    if not isinstance(envelope, dict) or envelope.get("format") != PLAN_FORMAT:
        raise PlanError(f"{path}: not a cgc plan (no '{PLAN_FORMAT}' format marker)")
    version = envelope.get("version")
    if version != PLAN_VERSION:
        raise PlanError(f"{path}: plan format version {str(version)[:20]} is not supported by this runtime "
                        f"(supports version {PLAN_VERSION}); recompile the plan with this cgc")
    body_bytes = envelope.get("body")
    if not isinstance(body_bytes, bytes) or hashlib.sha256(body_bytes).hexdigest() != envelope.get("body_sha256"):
        raise PlanError(f"{path}: plan is corrupted (checksum mismatch); recompile it")
    body = _unpack(body_bytes, path, "body")
    from runtime.plan_schema import check_body
    check_body(body, path)
    return body


def load_plan(path):
    """Read and validate a plan file; returns its body dict (with `path` recorded)."""
    try:
        if not os.path.isfile(path):  # a FIFO or device would block or never end
            raise PlanError(f"{path}: cannot read plan: {'no such file' if not os.path.exists(path) else 'not a regular file'}")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read plan: {exc.strerror}") from None
    body = decode_plan(data, path)
    body["path"] = os.path.abspath(path)
    return body


def weights_image(body):
    """The weights region image (bytes-like): the embedded blob or the checked external file."""
    weights = body["weights"]
    if weights["storage"] == "embedded":
        return weights["blob"]
    return _external_image(body)


def _external_image(body):
    import numpy as np

    from runtime.weight_upload import place_into, stream_weights
    image = np.zeros(body["regions"]["weights"], dtype=np.uint8)
    stream_weights(body, place_into(image))
    return image


def place_weight(image, entry, array):
    """Copy a stored weight into the region image at its offset, rows padded to `row_stride`."""
    import numpy as np
    raw = np.ascontiguousarray(array)
    stride = entry.get("row_stride")
    if not stride or raw.ndim != 2 or stride == raw.shape[1]:
        flat = raw.reshape(-1).view(np.uint8)
        image[entry["offset"]:entry["offset"] + flat.size] = flat
        return
    rows, cols = raw.shape
    target = np.ndarray((rows, cols), dtype=raw.dtype, buffer=image, offset=entry["offset"],
                        strides=(stride * raw.itemsize, raw.itemsize))
    target[...] = raw
