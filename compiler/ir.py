"""The graph IR: tensors, weights and ops of one transformer forward, in execution order.

Activations are 2-D `[T, N]` (T = batch * seq token rows, the symbol "T"); program inputs carry
the symbols "B" and "S". A tensor with `view_of` set is a zero-copy column slice of another.
Weights are described by a recipe saying how the stored array is made from checkpoint tensors:
    ("checkpoint", hf_name)          a tensor of the checkpoint (or seeded random init)
    ("transpose", weight_name)       the 2-D transpose of another weight
    ("concat", (weight_names...), axis)
    ("rope_cos" | "rope_sin", head_dim, theta, scaling)   tables made at compile time
    ("fold_scale", weight_name, norm_scale_name | None, center)   diag(scale) W, columns centered
                                                                 when `center` (fold_norms pass)
    ("fold_bias", weight_name, norm_shift_name, bias_name | None) shift @ W + bias
    ("quantize", weight_name, mode, group_size, layout, part, scale_dtype)   a part ("codes",
                                     "scale", "min") of the weight quantized (runtime/quant.py)
"""

import copy
from dataclasses import dataclass, field


@dataclass
class Tensor:
    """An activation or program input/output."""

    name: str
    shape: tuple = ()
    dtype: str = ""
    view_of: tuple | None = None  # (base tensor name, first column)


@dataclass
class Weight:
    """A stored weight: shape, dtype, recipe (see module doc) and random-init kind."""

    name: str
    recipe: tuple
    shape: tuple | None = None
    dtype: str = ""
    init: str = "normal"  # normal | norm | bias: how seeded random init fills a checkpoint tensor


def recipe_sources(recipe):
    """Names of the weights a recipe is made from."""
    if recipe[0] == "concat":
        return list(recipe[1])
    if recipe[0] in ("transpose", "fold_scale", "fold_bias"):
        return [name for name in recipe[1:] if isinstance(name, str)]
    if recipe[0] == "quantize":
        return [recipe[1]]
    return []


@dataclass
class Op:
    """One operation; `inputs`/`weights` map a role to a tensor/weight name."""

    kind: str
    name: str
    inputs: dict
    weights: dict
    outputs: list
    attrs: dict
    where: str  # "graphs/gpt2.yaml:23" (+ " (layer 3)")
    layer: int | None = None

    def describe(self):
        """Location and identity of the op, for error messages."""
        return f"{self.where}: op '{self.kind}' ({self.name})"


@dataclass
class Graph:
    """A whole model forward plus what the passes recorded."""

    name: str
    family: str
    source: str
    config: dict
    dtype: str
    inputs: dict = field(default_factory=dict)    # name -> Tensor
    outputs: dict = field(default_factory=dict)   # public name -> tensor name
    tensors: dict = field(default_factory=dict)   # name -> Tensor (activations + inputs)
    weights: dict = field(default_factory=dict)   # name -> Weight
    ops: list = field(default_factory=list)
    pass_log: list = field(default_factory=list)  # [(pass name, summary)]
    buffers: dict | None = None                   # set by plan_buffers

    def copy(self):
        """A deep copy, so that a pass never mutates its input graph."""
        return copy.deepcopy(self)

    def consumers(self, tensor_name):
        """Ops reading `tensor_name` (directly or through a view of it)."""
        return [op for op in self.ops if tensor_name in op.inputs.values()]

    def producer(self, tensor_name):
        """The op writing `tensor_name`, or None for program inputs."""
        for op in self.ops:
            if tensor_name in op.outputs:
                return op
        return None

    def prune_weights(self):
        """Drop weights no op or recipe refers to any more."""
        used = set()
        pending = [w for op in self.ops for w in op.weights.values()]
        while pending:
            name = pending.pop()
            if name in used:
                continue
            used.add(name)
            pending.extend(recipe_sources(self.weights[name].recipe))
        self.weights = {n: w for n, w in self.weights.items() if n in used}

    def prune_tensors(self):
        """Drop tensors no op defines or reads, keeping inputs and outputs."""
        used = set(self.inputs) | set(self.outputs.values())
        for op in self.ops:
            used.update(op.inputs.values())
            used.update(op.outputs)
        for name in list(used):
            tensor = self.tensors.get(name)
            if tensor is not None and tensor.view_of:
                used.add(tensor.view_of[0])
        self.tensors = {n: t for n, t in self.tensors.items() if n in used}

    def log(self, pass_name, summary):
        """Record what a pass changed (shown by `cgc inspect`)."""
        self.pass_log.append((pass_name, summary))
