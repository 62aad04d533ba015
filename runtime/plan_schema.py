"""Strict check of a whole plan body (the layout runtime/plan.py documents), run on every load
after the checksum: types, ranges, indices into the kernel list, operands inside their regions,
weights inside the weights region, sane memory totals. A plan that passes can be executed
without any later lookup failing; one that fails gets a PlanError naming the field."""

import re

from runtime.errors import PlanError
from runtime.plan import REGIONS

MAX_REGION_BYTES = 1 << 42   # 4 TiB: no device has more memory
MAX_DIM = 1 << 31
MAX_NDIM = 8
DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int8": 1, "uint8": 1, "float8_e4m3": 1}
MODEL_DTYPES = ("float32", "float16", "bfloat16")
QUANT_MODES = ("int8", "int4", "fp8")
BODY_KEYS = {"compiler", "created", "model", "targets", "devices", "limits", "regions", "buffers", "generation",
             "weights", "kernels", "programs", "passes", "tokenizer", "quantization"}
TOKENIZER_OPTIONAL = ("chat_template", "bos_token", "eos_token")
WEIGHTS_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, where, message):
        raise PlanError(f"{self.path}: plan field {where}: {message}")

    def map(self, value, where, required=(), optional=()):
        if not isinstance(value, dict):
            self.fail(where, f"expected a map, got {type(value).__name__}")
        missing = [key for key in required if key not in value]
        if missing:
            self.fail(where, f"lacks {', '.join(missing)}")
        if required or optional:
            extra = [key for key in value if key not in required and key not in optional]
            if extra:
                self.fail(where, f"has unknown key {str(extra[0])[:40]!r}")
        return value

    def list(self, value, where, max_len=1 << 24):
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {type(value).__name__}")
        if len(value) > max_len:
            self.fail(where, f"has {len(value)} entries (at most {max_len})")
        return value

    def int(self, value, where, low=0, high=MAX_REGION_BYTES):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            self.fail(where, f"{value} is outside {low}..{high}")
        return value

    def str(self, value, where, choices=None, none=False):
        if value is None and none:
            return value
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {type(value).__name__}")
        if choices is not None and value not in choices:
            self.fail(where, f"{value[:40]!r} is not one of {', '.join(choices)}")
        return value

    def operand(self, value, where, regions):
        self.map(value, where, ("region", "offset", "shape", "strides", "dtype"))
        region = self.str(value["region"], f"{where}.region", REGIONS)
        offset = self.int(value["offset"], f"{where}.offset")
        shape = [self.int(d, f"{where}.shape", 0, MAX_DIM) for d in self.list(value["shape"], f"{where}.shape", MAX_NDIM)]
        strides = [self.int(s, f"{where}.strides", 0, MAX_DIM)
                   for s in self.list(value["strides"], f"{where}.strides", MAX_NDIM)]
        if len(strides) != len(shape):
            self.fail(where, f"has {len(shape)} dimensions but {len(strides)} strides")
        size = DTYPES[self.str(value["dtype"], f"{where}.dtype", tuple(DTYPES))]
        if 0 in shape:
            return
        end = offset + (sum((d - 1) * s for d, s in zip(shape, strides)) + 1) * size
        if end > regions[region]:
            self.fail(where, f"ends at byte {end}, past the end of region '{region}' ({regions[region]} bytes)")


def check_body(body, path="<plan>"):
    """Raise PlanError unless `body` is a well-formed plan body in every field."""
    c = _Checker(path)
    c.map(body, "body", tuple(sorted(BODY_KEYS)))
    c.map(body["compiler"], "compiler", ("name", "version", "cuda_tile"), ("tileiras",))
    c.str(body["compiler"]["version"], "compiler.version")
    c.str(body["compiler"]["cuda_tile"], "compiler.cuda_tile", none=True)
    c.str(body["compiler"].get("tileiras"), "compiler.tileiras", none=True)
    c.str(body["created"], "created")
    model = c.map(body["model"], "model", ("name", "family", "graph_file", "dtype", "config"))
    for key in ("name", "family", "graph_file"):
        c.str(model[key], f"model.{key}")
    c.str(model["dtype"], "model.dtype", MODEL_DTYPES)
    c.map(model["config"], "model.config")
    vocab = model["config"].get("vocab_size")
    if vocab is not None:
        c.int(vocab, "model.config.vocab_size", 1, MAX_DIM)
    for sm in c.list(body["targets"], "targets", 64):
        c.int(sm, "targets", 1, 10_000)
    for key, device in c.map(body["devices"], "devices").items():
        if key not in {f"sm_{sm}" for sm in body["targets"]}:
            c.fail("devices", f"names {str(key)[:40]!r}, which is not a target")
        c.map(device, f"devices.{key}", ("sm_count", "device", "title", "bandwidth_gbs"))
        c.int(device["sm_count"], f"devices.{key}.sm_count", 1, 1024)
        c.str(device["device"], f"devices.{key}.device", none=True)
        c.str(device["title"], f"devices.{key}.title", none=True)
        bandwidth = device["bandwidth_gbs"]
        if bandwidth is not None and (isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float))
                                      or not 0 < bandwidth < 1e6):
            c.fail(f"devices.{key}.bandwidth_gbs", f"expected a positive number of GB/s, got {bandwidth!r}")
    limits = c.map(body["limits"], "limits", ("max_batch", "max_seq", "prefill_buckets"))
    c.int(limits["max_batch"], "limits.max_batch", 1, 1 << 16)
    max_seq = c.int(limits["max_seq"], "limits.max_seq", 1, 1 << 24)
    if not c.list(limits["prefill_buckets"], "limits.prefill_buckets", 64):
        c.fail("limits.prefill_buckets", "is empty")
    for bucket in limits["prefill_buckets"]:
        c.int(bucket, "limits.prefill_buckets", 1, max_seq)
    regions = c.map(body["regions"], "regions", REGIONS)
    for name in REGIONS:
        c.int(regions[name], f"regions.{name}")
    if sum(regions.values()) > MAX_REGION_BYTES:
        c.fail("regions", f"total {sum(regions.values())} bytes is more than any device holds")
    buffers = c.map(body["buffers"], "buffers", ("arena_row_bytes", "naive_row_bytes"))
    for key in buffers:
        c.int(buffers[key], f"buffers.{key}")
    if body["generation"] is not None:
        generation = c.map(body["generation"], "generation", ("history", "params", "options", "eos"))
        for key, operand in generation.items():
            c.operand(operand, f"generation.{key}", regions)
    _check_weights(c, body["weights"], regions)
    kernels = c.list(body["kernels"], "kernels", 1 << 20)
    for index, kernel in enumerate(kernels):
        _check_kernel(c, kernel, f"kernels[{index}]")
    programs = c.map(body["programs"], "programs")
    if "decode" not in programs:
        c.fail("programs", "has no 'decode' program")
    for name, program in programs.items():
        _check_program(c, program, f"programs.{c.str(name, 'programs')}", regions, len(kernels))
    for index, entry in enumerate(c.list(body["passes"], "passes", 4096)):
        if len(c.list(entry, f"passes[{index}]", 2)) != 2:
            c.fail(f"passes[{index}]", "expected [name, summary]")
        c.str(entry[0], f"passes[{index}]")
        c.str(entry[1], f"passes[{index}]")
    _check_tokenizer(c, body["tokenizer"])
    _check_quantization(c, body["quantization"])
    _check_shapes(c, body)


def _shape(c, operand, where, shape, dtype):
    if list(operand["shape"]) != list(shape) or operand["dtype"] != dtype:
        c.fail(where, f"is {operand['dtype']} {operand['shape']}, expected {dtype} {list(shape)}")


def _check_shapes(c, body):
    """Programs, inputs and sampler state agree with the limits (what generate() writes into them)."""
    limits, programs = body["limits"], body["programs"]
    batch, max_seq = limits["max_batch"], limits["max_seq"]
    expected = {f"prefill_{bucket}": bucket for bucket in limits["prefill_buckets"]}
    expected["decode"] = 1
    for name, seq in expected.items():
        if name not in programs:
            c.fail("programs", f"has no '{name}' program (limits name it)")
        program = programs[name]
        if program["batch"] != batch or program["seq"] != seq:
            c.fail(f"programs.{name}", f"is batch {program['batch']} x seq {program['seq']}, expected {batch} x {seq}")
        inputs = program["inputs"]
        _shape(c, inputs["tokens"], f"programs.{name}.inputs.tokens", (batch, seq), "int32")
        _shape(c, inputs["start_pos"], f"programs.{name}.inputs.start_pos", (batch,), "int32")
        _shape(c, inputs["seq_lens"], f"programs.{name}.inputs.seq_lens", (batch,), "int32")
        logits = program["outputs"].get("logits")
        vocab = body["model"]["config"].get("vocab_size")
        # every row's logits, or (prefill without --prompt-logits) each sequence's last row's
        if logits is not None and (len(logits["shape"]) != 2 or logits["shape"][0] not in (batch * seq, batch)
                                   or (vocab is not None and logits["shape"][1] != vocab)):
            c.fail(f"programs.{name}.outputs.logits", f"has shape {logits['shape']}, expected "
                                                      f"[{batch * seq}, {vocab}] or [{batch}, {vocab}]")
    generation = body["generation"]
    if generation is not None:
        _shape(c, generation["history"], "generation.history", (batch, max_seq), "int32")
        _shape(c, generation["params"], "generation.params", (batch, 4), "float32")
        _shape(c, generation["options"], "generation.options", (batch, 4), "int32")
        if len(generation["eos"]["shape"]) != 1 or generation["eos"]["dtype"] != "int32":
            c.fail("generation.eos", "expected a 1-D int32 operand")


def _check_weights(c, weights, regions):
    c.map(weights, "weights")
    storage = c.str(weights.get("storage"), "weights.storage", ("embedded", "external"))
    if storage == "embedded":
        c.map(weights, "weights", ("storage", "blob", "table"))
        if not isinstance(weights["blob"], bytes) or len(weights["blob"]) != regions["weights"]:
            c.fail("weights.blob", f"expected {regions['weights']} bytes (regions.weights)")
    else:
        c.map(weights, "weights", ("storage", "file", "sha256", "table"))
        check_weights_file_name(c, weights["file"])
        if not isinstance(weights["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", weights["sha256"]):
            c.fail("weights.sha256", "expected 64 lowercase hex digits")
    names = set()
    for index, entry in enumerate(c.list(weights["table"], "weights.table", 1 << 20)):
        where = f"weights.table[{index}]"
        c.map(entry, where, ("name", "shape", "dtype", "offset", "nbytes", "row_stride"), ("recipe", "quant"))
        if "quant" in entry:
            _check_quant_record(c, entry["quant"], f"{where}.quant", ("mode", "group_size", "part", "of"))
            c.str(entry["quant"]["part"], f"{where}.quant.part", ("codes", "scale", "min"))
            c.str(entry["quant"]["of"], f"{where}.quant.of")
        name = c.str(entry["name"], f"{where}.name")
        if name in names:
            c.fail(f"{where}.name", f"'{name[:60]}' appears twice")
        names.add(name)
        shape = [c.int(d, f"{where}.shape", 0, MAX_DIM) for d in c.list(entry["shape"], f"{where}.shape", MAX_NDIM)]
        size = DTYPES[c.str(entry["dtype"], f"{where}.dtype", tuple(DTYPES))]
        offset, nbytes = c.int(entry["offset"], f"{where}.offset"), c.int(entry["nbytes"], f"{where}.nbytes")
        if entry["row_stride"] is not None:
            c.int(entry["row_stride"], f"{where}.row_stride", 0, MAX_DIM)
        elements = 1
        for d in shape:
            elements *= d
        stride = entry["row_stride"] if len(shape) == 2 and entry["row_stride"] else None
        needed = (shape[0] * stride if stride else elements) * size
        if stride is not None and stride < shape[1]:
            c.fail(f"{where}.row_stride", f"{stride} is less than the row length {shape[1]}")
        if nbytes < needed:
            c.fail(f"{where}.nbytes", f"{nbytes} bytes cannot hold shape {shape} ({needed} bytes)")
        if offset + nbytes > regions["weights"]:
            c.fail(where, f"ends at byte {offset + nbytes}, past the weights region ({regions['weights']} bytes)")


def _check_quant_record(c, record, where, keys=("mode", "group_size")):
    c.map(record, where, keys)
    c.str(record["mode"], f"{where}.mode", QUANT_MODES)
    if record["group_size"] is not None or record["mode"] == "int4":
        c.int(record["group_size"], f"{where}.group_size", 1, MAX_DIM)


def _check_quantization(c, quantization):
    if quantization is None:
        return
    c.map(quantization, "quantization", ("mode", "group_size", "linears", "source"))
    c.str(quantization["source"], "quantization.source", ("compile", "gptq", "awq"))
    _check_quant_record(c, {key: quantization[key] for key in ("mode", "group_size")}, "quantization")
    for name, record in c.map(quantization["linears"], "quantization.linears").items():
        _check_quant_record(c, record, f"quantization.linears.{str(name)[:60]}")


def check_weights_file_name(c, name):
    """An external weights file is a plain name beside the plan: no separators, no '..', not absolute."""
    if not isinstance(name, str) or not WEIGHTS_FILE.fullmatch(name) or name in (".", "..") or ".." in name:
        c.fail("weights.file", f"{str(name)[:80]!r} is not a plain file name beside the plan "
                               f"(letters, digits, '.', '_', '-'; no path separators or '..')")


def _check_kernel(c, kernel, where):
    c.map(kernel, where, ("template", "constants", "signature", "cubins"), ("sm",))
    c.str(kernel["template"], f"{where}.template")
    c.map(kernel["constants"], f"{where}.constants")
    for entry in c.list(kernel["signature"], f"{where}.signature", 256):
        if not isinstance(entry, list) or not 2 <= len(entry) <= 8:  # SM specs add alignment facts
            c.fail(f"{where}.signature", "expected [dtype, ndim, ...] entries")
        c.str(entry[0], f"{where}.signature", tuple(DTYPES))
        c.int(entry[1], f"{where}.signature", 0, MAX_NDIM)
    sm = kernel.get("sm")
    if sm is not None:
        c.int(sm, f"{where}.sm", 1, 10_000)
    for key, cubin in c.map(kernel["cubins"], f"{where}.cubins").items():
        if sm is None or key != f"sm_{sm}":
            c.fail(f"{where}.cubins", f"holds {str(key)[:20]!r}, expected only sm_{sm}")
        c.map(cubin, f"{where}.cubins.{key}", ("symbol", "block", "image"))
        c.str(cubin["symbol"], f"{where}.cubins.{key}.symbol")
        block = c.list(cubin["block"], f"{where}.cubins.{key}.block", 3)
        if len(block) != 3:
            c.fail(f"{where}.cubins.{key}.block", "expected [x, y, z]")
        for value in block:
            c.int(value, f"{where}.cubins.{key}.block", 1, 1024)
        if not isinstance(cubin["image"], bytes) or not cubin["image"]:
            c.fail(f"{where}.cubins.{key}.image", "expected the cubin's bytes")


def _check_program(c, program, where, regions, kernels):
    c.map(program, where, ("batch", "seq", "inputs", "outputs", "launches"))
    c.int(program["batch"], f"{where}.batch", 1, 1 << 16)
    c.int(program["seq"], f"{where}.seq", 1, 1 << 24)
    inputs = c.map(program["inputs"], f"{where}.inputs", ("tokens", "start_pos", "seq_lens"))
    for key, operand in inputs.items():
        c.operand(operand, f"{where}.inputs.{key}", regions)
    for key, operand in c.map(program["outputs"], f"{where}.outputs").items():
        c.operand(operand, f"{where}.outputs.{key}", regions)
    for index, launch in enumerate(c.list(program["launches"], f"{where}.launches", 1 << 20)):
        at = f"{where}.launches[{index}]"
        c.map(launch, at, ("kernel", "op", "args"), ("targets",))
        c.int(launch["kernel"], f"{at}.kernel", 0, kernels - 1)
        c.str(launch["op"], f"{at}.op")
        for number, operand in enumerate(c.list(launch["args"], f"{at}.args", 256)):
            c.operand(operand, f"{at}.args[{number}]", regions)
        for key, target in c.map(launch.get("targets", {}), f"{at}.targets").items():
            c.map(target, f"{at}.targets.{key}", ("kernel", "grid"))
            c.int(target["kernel"], f"{at}.targets.{key}.kernel", 0, kernels - 1)
            grid = c.list(target["grid"], f"{at}.targets.{key}.grid", 3)
            if len(grid) != 3:
                c.fail(f"{at}.targets.{key}.grid", "expected [x, y, z]")
            for value in grid:
                c.int(value, f"{at}.targets.{key}.grid", 1, MAX_DIM)


def _check_tokenizer(c, tokenizer):
    if tokenizer is None:
        return
    c.map(tokenizer, "tokenizer", ("tokenizer_json", "eos_token_ids"), TOKENIZER_OPTIONAL)
    c.str(tokenizer["tokenizer_json"], "tokenizer.tokenizer_json")
    for token in c.list(tokenizer["eos_token_ids"], "tokenizer.eos_token_ids", 64):
        c.int(token, "tokenizer.eos_token_ids", 0, MAX_DIM - 1)
    for key in TOKENIZER_OPTIONAL:
        c.str(tokenizer.get(key), f"tokenizer.{key}", none=True)
