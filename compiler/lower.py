"""Lower a scheduled graph to programs of kernel launches over memory regions.

Regions: `arena` (activations, laid out by plan_buffers), `io` (each program's inputs and
outputs), `kv` (the KV cache, [B, KVH, P, D] per layer for k and v), `weights` (stored weights),
`scratch` (device scratch: split decode attention's partial results, see _kv_splits; the prefill
LM head's input rows, see _last_rows; a prefill linear's dequantized weight, see _dequant).
Each op's `_<kind>` method yields (template, constants, operands by role); the template's kernel
module (compiler/kernels/) puts the operands in its order.
Generation state (io region, shared by every program) lets a whole generation run without the
host choosing tokens: each program ends with a `sample` launch that picks every sequence's next
token from its logits and writes it, with its position, straight into the decode program's
inputs and into `history` (see templates/README.md). Every operand is {region, offset (bytes),
shape, strides (elements), dtype}. Kernel specs
(template + constants + operand signature) are deduplicated across layers and programs.
"""

from dataclasses import dataclass

from compiler import kernels
from compiler.errors import CompileError
from compiler.ir import Weight
from compiler.kernels.attention import decode_kv_splits
from compiler.tiles import SHIPPED, shape_class
from runtime.dtypes import itemsize
from runtime.plan_layout import DECODE_STATS_GROUP, EOS_SLOTS, STATS_GROUP, argmax_width, stats_width

ALIGN = 256
ROW_PAD = 128  # bytes: 2-D weights and outputs get row strides padded to this (TMA wants 16 B)


def _halves(operand, axis):
    """Two views of an operand, each half of it along `axis` (each keeps its own base)."""
    axis = axis % len(operand["shape"])
    half = operand["shape"][axis] // 2
    shape = [half if index == axis else dim for index, dim in enumerate(operand["shape"])]
    first = {**operand, "shape": shape}
    return first, {**first, "offset": operand["offset"] + half * operand["strides"][axis] * itemsize(operand["dtype"])}


def padded_row(width, dtype):
    """Row stride (elements) for a row of `width` elements: a multiple of ROW_PAD bytes."""
    step = ROW_PAD // itemsize(dtype)
    return -(-int(width) // step) * step


@dataclass(frozen=True)
class ProgramShape:
    """A program to emit: `batch` sequences of `seq` rows (seq 1 = decode)."""

    name: str
    batch: int
    seq: int


def program_shapes(max_batch, prefill_buckets):
    """The prefill programs (one per bucket) and the decode program."""
    shapes = [ProgramShape(f"prefill_{bucket}", max_batch, bucket) for bucket in sorted(set(prefill_buckets))]
    return shapes + [ProgramShape("decode", max_batch, 1)]


def _align(value):
    return -(-value // ALIGN) * ALIGN


def _contiguous(shape):
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return list(reversed(strides))


def _operand(region, offset, shape, dtype, strides=None):
    shape = [int(d) for d in shape]
    return {"region": region, "offset": int(offset), "shape": shape,
            "strides": strides if strides is not None else _contiguous(shape), "dtype": dtype}


class Lowering:
    """Builds kernel specs, weight layout, KV layout and per-program launch lists."""

    def __init__(self, graph, max_batch, max_seq, rules=SHIPPED, prompt_logits=False):
        self.graph = graph.copy()
        self.max_batch = max_batch
        self.max_seq = max_seq
        self.rules = rules
        self.prompt_logits = prompt_logits  # prefill programs output every row's logits, not the last rows'
        self.io_bytes = 0
        self.kernels = []
        self._kernel_ids = {}
        self.weights = dict(graph.weights)  # every weight, recipe sources included
        self._add_rope_tables()
        # only what kernels read is stored; recipe sources exist at compile time only
        self.stored = list(dict.fromkeys(w for op in self.graph.ops for w in op.weights.values()))
        self.weight_layout, self.weights_bytes = self._layout_weights()
        self.kv_layout, self.kv_bytes = self._layout_kv()
        self.arena_bytes = 0
        self.scratch_bytes = 0
        self.generation = self._generation_state()

    def _add_rope_tables(self):
        for op in self.graph.ops:
            if op.kind != "rope":
                continue
            key = (op.attrs["head_dim"], op.attrs["theta"], repr(sorted((op.attrs.get("scaling") or {}).items())))
            names = []
            for kind in ("rope_cos", "rope_sin"):
                name = f"cgc.{kind}.d{key[0]}.theta{key[1]:g}" + (".scaled" if op.attrs.get("scaling") else "")
                if name not in self.weights:
                    self.weights[name] = Weight(name, (kind, op.attrs["head_dim"], op.attrs["theta"],
                                                       op.attrs.get("scaling"), self.max_seq),
                                                shape=(self.max_seq, op.attrs["head_dim"] // 2), dtype="float32")
                names.append(name)
            op.weights["cos"], op.weights["sin"] = names

    def _io(self, shape, dtype, strides=None):
        """A fresh operand at the end of the io region."""
        operand = _operand("io", self.io_bytes, shape, dtype, strides=strides)
        rows = shape[0] * (strides[0] if strides else int(_contiguous(shape)[0]))
        self.io_bytes = _align(self.io_bytes + rows * itemsize(dtype))
        return operand

    def _generation_state(self):
        """The sampler's state and the decode program's inputs (which every program's sampler writes)."""
        if "logits" not in self.graph.outputs:
            return None
        batch, vocab = self.max_batch, int(self.graph.tensors[self.graph.outputs["logits"]].shape[1])
        return {"decode_tokens": self._io([batch, 1], "int32"), "decode_start_pos": self._io([batch], "int32"),
                "decode_seq_lens": self._io([batch], "int32"),
                "history": self._io([batch, self.max_seq], "int32"),
                "params": self._io([batch, 4], "float32"), "options": self._io([batch, 4], "int32"),
                "eos": self._io([EOS_SLOTS], "int32"),
                "scratch": self._io([batch, vocab], "float32", strides=[padded_row(vocab, "float32"), 1])}

    def _layout_weights(self):
        layout, offset = {}, 0
        for name in self.stored:
            weight = self.weights[name]
            shape = [int(d) for d in weight.shape]
            if len(shape) == 2:
                shape[1] = padded_row(shape[1], weight.dtype)
            nbytes = itemsize(weight.dtype)
            for dim in shape:
                nbytes *= dim
            layout[name] = (offset, nbytes)
            offset = _align(offset + nbytes)
        return layout, offset

    def row_stride(self, name):
        """Elements between rows of a stored 2-D weight (padded), or None for 1-D ones."""
        weight = self.weights[name]
        return padded_row(weight.shape[1], weight.dtype) if len(weight.shape) == 2 else None

    def _layout_kv(self):
        layout, offset = {}, 0
        for op in self.graph.ops:
            if op.kind != "attention":
                continue
            shape = (self.max_batch, op.attrs["kv_heads"], self.max_seq, op.attrs["head_dim"])
            nbytes = itemsize(self.graph.dtype) * shape[0] * shape[1] * shape[2] * shape[3]
            layout[op.name] = (_operand("kv", offset, shape, self.graph.dtype),
                               _operand("kv", _align(offset + nbytes), shape, self.graph.dtype))
            offset = _align(_align(offset + nbytes) + nbytes)
        return layout, offset

    def weight_operand(self, name):
        """Operand for a stored weight."""
        offset, _ = self.weight_layout[name]
        weight = self.weights[name]
        stride = self.row_stride(name)
        return _operand("weights", offset, weight.shape, weight.dtype, strides=[stride, 1] if stride else None)

    def kernel_id(self, template, constants, operands):
        """Index of the kernel spec for this template/constants/operand signature (deduplicated)."""
        signature = tuple((o["dtype"], len(o["shape"])) for o in operands)
        key = (template, tuple(sorted(constants.items())), signature)
        if key not in self._kernel_ids:
            self._kernel_ids[key] = len(self.kernels)
            self.kernels.append({"template": template, "constants": dict(sorted(constants.items())),
                                 "signature": [list(s) for s in signature], "cubins": {}})
        return self._kernel_ids[key]

    def lower_program(self, shape):
        """The program dict (inputs, outputs, launches) for one ProgramShape."""
        return _ProgramLowering(self, shape).run()


class _ProgramLowering:
    def __init__(self, lowering, shape):
        self.lowering = lowering
        self.graph = lowering.graph
        self.shape = shape
        self.rows = shape.batch * shape.seq
        self.decode = shape.seq == 1
        # columns per row-statistics sum: decode-shaped one-row matmuls write 8 columns per CTA;
        # prefill keeps 32, so its readers' statistics tiles stay small
        self.stats_group = DECODE_STATS_GROUP if shape_class(lowering.rules, self.rows) == "decode" else STATS_GROUP
        self.fused_ropes = self._fused_ropes() if self.decode else {}
        self.kv_splits = self._kv_splits()
        self.io = {}
        io_offset = lowering.io_bytes
        state = lowering.generation
        if shape.seq == 1 and state:  # the decode inputs are the samplers' outputs
            self.io.update(tokens=state["decode_tokens"], start_pos=state["decode_start_pos"],
                           seq_lens=state["decode_seq_lens"])
            io_shapes = {}
        else:
            io_shapes = {"tokens": ([shape.batch, shape.seq], "int32"), "start_pos": ([shape.batch], "int32"),
                         "seq_lens": ([shape.batch], "int32")}
        self.argmax_of = self._argmax_linear(state)
        # a prefill program's LM head reads each sequence's last row only (copied by last_rows):
        # its logits are [B, V], row b the last real token of sequence b
        self.last_rows_of = self.argmax_of if not self.decode and not lowering.prompt_logits else None
        logits_rows = shape.batch if self.last_rows_of else self.rows
        self.overrides = {}  # tensor name -> operand, for the LM head's gathered inputs
        for public, tensor_name in self.graph.outputs.items():
            tensor = self.graph.tensors[tensor_name]
            io_shapes[tensor_name] = ([logits_rows if public == "logits" else self.rows, tensor.shape[1]], tensor.dtype)
        padded = set(self.graph.outputs.values())  # e.g. logits [T, 50257]: pad the row stride
        if self.argmax_of:  # the logits matmul's per-group (largest value, first id) for the greedy sampler
            pairs = argmax_width(self.graph.tensors[self.graph.outputs["logits"]].shape[1])
            io_shapes.update(argmax_values=([logits_rows, pairs], "float32"),
                             argmax_ids=([logits_rows, pairs], "int32"))
            padded.update(("argmax_values", "argmax_ids"))
        for name, (dims, dtype) in io_shapes.items():
            strides = None
            nbytes = itemsize(dtype)
            if name in padded:
                strides = [padded_row(dims[1], dtype), 1]
                nbytes *= dims[0] * strides[0]
            else:
                for dim in dims:
                    nbytes *= dim
            self.io[name] = _operand("io", io_offset, dims, dtype, strides=strides)
            io_offset = _align(io_offset + nbytes)
        lowering.io_bytes = io_offset
        arena = self.rows * self.graph.buffers["arena_row_bytes"]
        lowering.arena_bytes = max(lowering.arena_bytes, _align(arena))

    def _argmax_linear(self, state):
        """Name of the linear writing the logits the sampler reads, or None (no sampler, or another
        kind of op writes them): that matmul also stores per-group maxima (see row_argmax)."""
        if not state:
            return None
        producer = self.graph.producer(self.graph.outputs["logits"])
        return producer.name if producer is not None and producer.kind == "linear" else None

    def _fused_ropes(self):
        """{attention name: rope op} for decode attentions that rotate q and k themselves: the merged
        q|k rope (merge_qk_rope) feeding only them, with a power-of-two head_dim (the kernel reads
        each head in two half tiles of head_dim / 2). Its launch is skipped; its input columns
        become q and k."""
        graph, fused = self.graph, {}
        for attention in (op for op in graph.ops if op.kind == "attention"):
            split = graph.producer(attention.inputs["q"])
            if split is None or split.kind != "split" or split.outputs != [attention.inputs["q"], attention.inputs["k"]]:
                continue
            rope = graph.producer(split.inputs["x"])
            head_dim = attention.attrs["head_dim"]
            if (rope is None or rope.kind != "rope" or "q_heads" not in rope.attrs or head_dim & (head_dim - 1)
                    or graph.consumers(rope.outputs[0]) != [split]
                    or any(graph.consumers(t) != [attention] for t in split.outputs)):
                continue
            fused[attention.name] = rope
        return fused

    def _kv_splits(self):
        """{attention name: kv splits} for decode: each head's cache tiles split over CTAs
        (compiler/kernels/attention.decode_kv_splits), which leave partial results in scratch for an
        `attention_merge` launch to combine. Every attention shares one scratch area: its merge
        finishes before the next attention writes."""
        if not self.decode:
            return {}
        splits = {op.name: decode_kv_splits(self.lowering.rules, op.attrs["head_dim"], self.lowering.max_seq,
                                            self.rows * op.attrs["heads"])
                  for op in self.graph.ops if op.kind == "attention"}
        return {name: count for name, count in splits.items() if count > 1}

    def _partials(self, attention, splits):
        """Scratch operands of a split attention's partial results, per (row, split) and head: the
        head's output over the split's keys [rows * splits, heads * head_dim] and the log of its
        softmax denominator (maximum included) [rows * splits, heads] (float32)."""
        rows, heads, head_dim = self.rows * splits, attention.attrs["heads"], attention.attrs["head_dim"]
        outputs = _operand("scratch", 0, [rows, heads * head_dim], "float32")
        lse_offset = _align(rows * heads * head_dim * 4)
        stride = padded_row(heads, "float32")
        lse = _operand("scratch", lse_offset, [rows, heads], "float32", strides=[stride, 1])
        self.lowering.scratch_bytes = max(self.lowering.scratch_bytes, _align(lse_offset + rows * stride * 4))
        return {"partials": outputs, "partial_lse": lse}

    def operand(self, tensor_name):
        if tensor_name in self.overrides:
            return dict(self.overrides[tensor_name])
        if tensor_name in self.io:
            return self.io[tensor_name]
        tensor = self.graph.tensors[tensor_name]
        base_name, column = tensor.view_of if tensor.view_of else (tensor_name, 0)
        base = self.graph.tensors[base_name]
        width = int(base.shape[1])
        if base_name in self.io:
            offset = self.io[base_name]["offset"]
        else:
            offset = self.rows * self.graph.buffers["row_offsets"][base_name]
        offset += column * itemsize(tensor.dtype)
        return _operand("arena", offset, [self.rows, tensor.shape[1]], tensor.dtype, strides=[width, 1])

    def stats_operand(self, tensor_name, norm, width):
        """The row statistics of a `width`-column tensor for this program's column groups: the
        first columns of the stats tensor (infer_shapes sizes it for the narrowest groups)."""
        operand = self.operand(tensor_name)
        operand["shape"] = [operand["shape"][0], stats_width(width, norm, self.stats_group)]
        return operand

    def run(self):
        launches = []
        skipped = {rope.name for rope in self.fused_ropes.values()}
        for op in self.graph.ops:
            if op.name in skipped:
                continue  # its attention rotates q and k (decode)
            lower = getattr(self, f"_{op.kind}", None)
            if lower is None:
                raise CompileError(f"{op.describe()}: no kernel lowers op '{op.kind}'")
            if op.name == self.last_rows_of:
                launches.extend(self._last_rows(op))
            for template, constants, named in lower(op):
                launches.append(self._launch(op.name, template, constants, named))
        outputs = {public: self.io[name] for public, name in self.graph.outputs.items()}
        if self.lowering.generation:
            launches.append(self._launch("sample", *self._sample(outputs["logits"])))
        return {"batch": self.shape.batch, "seq": self.shape.seq,
                "inputs": {name: self.io[name] for name in ("tokens", "start_pos", "seq_lens")},
                "outputs": outputs, "launches": launches}

    def _last_rows(self, op):
        """Launches copying each sequence's last row of the LM head's input (and of its folded
        norm's statistics) to scratch, which the LM head then reads as its [B, ...] inputs."""
        x = self.operand(op.inputs["x"])
        sources = {op.inputs["x"]: x}
        prologue = op.attrs.get("prologue")
        if prologue:
            sources[op.inputs["stats"]] = self.stats_operand(op.inputs["stats"], prologue["norm"], x["shape"][1])
        launches, offset = [], 0
        for tensor_name, source in sources.items():
            width = source["shape"][1]
            copy = _operand("scratch", offset, [self.shape.batch, width], source["dtype"])
            offset = _align(offset + self.shape.batch * width * itemsize(source["dtype"]))
            constants = {"dtype": source["dtype"], "seq": self.shape.seq}
            launches.append(self._launch(op.name, "last_rows", constants,
                                         {"x": source, "seq_lens": self.io["seq_lens"], "out": copy}))
            self.overrides[tensor_name] = copy
        self.lowering.scratch_bytes = max(self.lowering.scratch_bytes, offset)
        return launches

    def _launch(self, op_name, template, constants, named):
        operands = kernels.ordered(template, constants, named)
        return {"kernel": self.lowering.kernel_id(template, constants, operands), "op": op_name, "args": operands}

    def _sample(self, logits):
        """The sampler launch ending the program: it reads the logits (or the logits matmul's
        argmax pairs) and writes the decode program's inputs."""
        state = self.lowering.generation
        named = {"logits": logits, "start_pos": self.io["start_pos"], "seq_lens": self.io["seq_lens"],
                 **{role: state[role] for role in ("params", "options", "eos", "history", "scratch")},
                 "next_tokens": state["decode_tokens"], "next_start": state["decode_start_pos"],
                 "next_lens": state["decode_seq_lens"]}
        constants = {"dtype": logits["dtype"], "phase": "decode" if self.decode else "prefill", "seq": self.shape.seq}
        if self.last_rows_of:  # logits row b is sequence b's last token
            constants["last_rows"] = True
        if self.argmax_of:
            named.update(argmax_values=self.io["argmax_values"], argmax_ids=self.io["argmax_ids"])
            constants["argmax_partials"] = True
        return "sample", constants, named

    def _weights(self, op, *roles):
        """{role: stored weight operand} of the roles `op` has."""
        return {r: self.lowering.weight_operand(op.weights[r]) for r in roles if r in op.weights}

    def _base(self):
        return {"dtype": self.graph.dtype}

    def _embed(self, op):
        positioned = "position_weight" in op.weights
        if positioned and self.lowering.max_seq > op.attrs["positions"]:
            raise CompileError(f"{op.describe()}: --max-seq {self.lowering.max_seq} exceeds the model's "
                               f"{op.attrs['positions']} learned positions")
        named = {"tokens": self.io["tokens"], "start_pos": self.io["start_pos"],
                 "table": self.lowering.weight_operand(op.weights["weight"]), "out": self.operand(op.outputs[0])}
        if positioned:
            named["pos_table"] = self.lowering.weight_operand(op.weights["position_weight"])
        constants = {**self._base(), "positions": positioned}
        if "row_stats" in op.attrs:  # outputs: out, then its row statistics (fold_norms)
            constants.update(row_stats=op.attrs["row_stats"], stats_group=self.stats_group)
            named["stats"] = self.stats_operand(op.outputs[1], op.attrs["row_stats"], named["out"]["shape"][1])
        yield "embed", constants, named

    def _layernorm(self, op):
        named = {"x": self.operand(op.inputs["x"]), **self._weights(op, "weight", "bias"),
                 "out": self.operand(op.outputs[0])}
        yield "layernorm", {**self._base(), "eps": op.attrs["eps"]}, named

    def _rmsnorm(self, op):
        named = {"x": self.operand(op.inputs["x"]), **self._weights(op, "weight"), "out": self.operand(op.outputs[0])}
        yield "rmsnorm", {**self._base(), "eps": op.attrs["eps"], "group": op.attrs["group"]}, named

    def _add_norm(self, op):
        named = {"a": self.operand(op.inputs["a"]), "b": self.operand(op.inputs["b"]), **self._weights(op, "weight", "bias"),
                 "sum_out": self.operand(op.outputs[0]), "norm_out": self.operand(op.outputs[1])}
        yield "add_norm", {**self._base(), "eps": op.attrs["eps"], "norm": op.attrs["norm"]}, named

    def _linear(self, op):
        epilogue = tuple(op.attrs.get("epilogue", ()))
        if "bias" in op.weights and "bias" not in epilogue:
            epilogue = ("bias", *epilogue)  # a linear's own bias is always applied
        constants = {**self._base(), "epilogue": epilogue}
        out_in = op.attrs.get("layout", "out_in") == "out_in"  # weight [N, K] (store_out_in)
        if out_in:
            constants["weight_layout"] = "out_in"
        prologue = op.attrs.get("prologue")
        named = {"x": self.operand(op.inputs["x"])}
        if not self.decode and op.name != self.last_rows_of:  # row tiles past their length skip their K loop
            constants["row_skip"] = True
            named["seq_lens"] = self.io["seq_lens"]
        if prologue:  # a norm folded into the weights (fold_norms): rows scaled by rstd from `stats`
            constants.update(prologue=prologue["norm"], eps=prologue["eps"], stats_group=self.stats_group)
            named["norm_stats"] = self.stats_operand(op.inputs["stats"], prologue["norm"], named["x"]["shape"][1])
        quant = op.attrs.get("quant")
        if quant and self._dequantizes(op, quant):  # multiply by a float copy the launch before writes
            weights = {"weight": (yield from self._dequant(op, quant, out_in))}
            constants["prefetch"] = 0  # that copy is not ready before the wait
        else:
            if quant:  # codes, scales (and int4 minima) of the weight (quantize_linears; runtime/quant.py)
                constants["weight_quant"] = quant["mode"]
                if quant["group_size"]:
                    constants["quant_group"] = quant["group_size"]
            weights = {role: self.lowering.weight_operand(op.weights[role])
                       for role in ("weight", "weight_scale", "weight_min") if role in op.weights}
        for role, weight in weights.items():
            if "silu_mul" in epilogue:  # [gate; up] rows (out_in) or [K, gate | up] columns: a view of each half
                named[role], named[role.replace("weight", "weight_up")] = _halves(weight, 0 if out_in else -1)
            else:
                named[role] = weight
        if "bias" in epilogue:
            named.update(self._weights(op, "bias"))
        if "residual" in epilogue:
            named["residual"] = self.operand(op.inputs["residual"])
        out = named["out"] = self.operand(op.outputs[0])
        constants["out_dtype"] = out["dtype"]
        if "row_stats" in op.attrs:  # the output's row statistics for a folded norm that reads it
            constants.update(row_stats=op.attrs["row_stats"], stats_group=self.stats_group)
            named["stats"] = self.stats_operand(op.outputs[1], op.attrs["row_stats"], out["shape"][1])
        if op.name == self.argmax_of:
            constants["row_argmax"] = True
            named.update(argmax_values=self.io["argmax_values"], argmax_ids=self.io["argmax_ids"])
        yield "matmul", constants, named

    def _dequantizes(self, op, quant):
        """Whether `op`'s int4 weight is dequantized into scratch for this program: prefill-shaped
        launches, where MMA row tiles would each dequantize every weight tile again (Llama-3.2-1B at
        512 tokens: 2.25x -> 1.52x the bf16 plan's time; docs/tuning.md). Not the LM head, which
        multiplies one row a sequence, and not int8 / fp8, whose copies ran slower than their tiles."""
        return (quant["mode"] == "int4" and shape_class(self.lowering.rules, self.rows) == "prefill"
                and op.outputs[0] not in self.graph.outputs.values())

    def _dequant(self, op, quant, out_in):
        """Yield the launch writing `op`'s int4 weight as floats (stored layout, two codes a byte along K)
        to scratch; return that operand."""
        codes = self.lowering.weight_operand(op.weights["weight"])
        features, depth = (codes["shape"][0], 2 * codes["shape"][1]) if out_in else (codes["shape"][1], 2 * codes["shape"][0])
        shape = [features, depth] if out_in else [depth, features]
        stride = padded_row(shape[1], self.graph.dtype)
        copy = _operand("scratch", 0, shape, self.graph.dtype, strides=[stride, 1])
        self.lowering.scratch_bytes = max(self.lowering.scratch_bytes, _align(shape[0] * stride * itemsize(self.graph.dtype)))
        constants = {"dtype": self.graph.dtype, "quant_group": quant["group_size"]}
        if out_in:
            constants["weight_layout"] = "out_in"
        named = {"codes": codes, "scale": self.lowering.weight_operand(op.weights["weight_scale"]),
                 "minimum": self.lowering.weight_operand(op.weights["weight_min"]), "out": copy}
        yield "dequant", constants, named
        return copy

    def _split(self, op):
        return ()

    def _rope(self, op):
        named = {"x": self.operand(op.inputs["x"]), **self._weights(op, "norm_weight", "k_norm_weight", "cos", "sin"),
                 "start_pos": self.io["start_pos"], "seq_lens": self.io["seq_lens"], "out": self.operand(op.outputs[0])}
        constants = {**self._base(), "heads": op.attrs["heads"], "head_dim": op.attrs["head_dim"], "seq": self.shape.seq}
        if "norm_weight" in op.weights:
            constants["norm_eps"] = op.attrs["norm_eps"]
        if "k_norm_weight" in op.weights:  # merged q|k rope: heads from q_heads on take the k norm
            constants["q_heads"] = op.attrs["q_heads"]
        yield "rope", constants, named

    def _attention(self, op):
        k_cache, v_cache = self.lowering.kv_layout[op.name]
        heads = {"kv_heads": op.attrs["kv_heads"], "head_dim": op.attrs["head_dim"], "seq": self.shape.seq}
        constants = {**self._base(), **heads, "heads": op.attrs["heads"], "scale": op.attrs["scale"],
                     "phase": "prefill" if self.shape.seq > 1 else "decode"}
        q, k = self.operand(op.inputs["q"]), self.operand(op.inputs["k"])
        rope = self.fused_ropes.get(op.name)
        extra = {}
        if rope is not None:  # q and k are the rope's input columns; the kernel rotates them
            qk = self.operand(rope.inputs["x"])
            q = {**qk, "shape": [qk["shape"][0], q["shape"][1]]}
            k = {**qk, "shape": [qk["shape"][0], k["shape"][1]],
                 "offset": qk["offset"] + q["shape"][1] * itemsize(qk["dtype"])}
            extra = self._weights(rope, "cos", "sin", "norm_weight", "k_norm_weight")
            constants["rope"] = True
            if "norm_weight" in rope.weights:
                constants["norm_eps"] = rope.attrs["norm_eps"]
        out = self.operand(op.outputs[0])
        splits = self.kv_splits.get(op.name)
        outputs = self._partials(op, splits) if splits else {"out": out}
        if splits:
            constants["kv_splits"] = splits
        yield "attention", constants, {
            "q": q, "k": k, "v": self.operand(op.inputs["v"]), "k_cache": k_cache, "v_cache": v_cache,
            "start_pos": self.io["start_pos"], "seq_lens": self.io["seq_lens"], **extra, **outputs}
        if splits:  # the splits' partial results combined into the output rows
            merge = {**self._base(), "heads": op.attrs["heads"], "head_dim": op.attrs["head_dim"], "splits": splits}
            yield "attention_merge", merge, {**outputs, "out": out}

    def _elementwise(self, template, op, roles):
        named = {r: self.operand(op.inputs[r]) for r in roles}
        named["out"] = self.operand(op.outputs[0])
        yield template, self._base(), named

    def _gelu(self, op):
        return self._elementwise("gelu", op, ("x",))

    def _silu_mul(self, op):
        return self._elementwise("silu_mul", op, ("gate", "up"))

    def _add(self, op):
        return self._elementwise("add", op, ("a", "b"))
