"""Fold each whole-row LayerNorm/RMSNorm into the linears that read it.

    LayerNorm(x) @ W + b = rstd(x) * (x @ W'') + b'    W'' = diag(gamma) W, columns centered
                                                        b'  = beta @ W + b
    RMSNorm(x)   @ W + b = rstd(x) * (x @ W')  + b     W'  = diag(gamma) W

W'' has zero column sums, so x @ W'' = (x - mean(x)) @ diag(gamma) W. The folded weights are
made at compile time (recipes "fold_scale" and "fold_bias"). The row statistics come from the
op that wrote x (a linear or the embedding): its epilogue also stores, per row, the sums of
squares (and, for LayerNorm, the sums) of each 32-column group of the values it stored, into a
small fp32 tensor `<x>.stats` (layout: runtime/plan_layout.stats_width). The reading matmul
loads it before its K loop and scales its rows by rstd after it. The norm's launch and its round trip
through memory disappear, in prefill and decode alike.
(Gathering the sums inside the reading matmul's K loop instead ran slower: docs/tuning.md.)
Declines plans with quantized weights (--quant: the codes are those of the checkpoint's weights,
so that a plan equals the model with each weight replaced by its dequantized value), per-head
norms, norms with a reader that is not an [in, out] linear, norms whose output the program
returns, and norms whose input another kind of op (or a view) produces.
Order: after fuse_epilogues (a producer's epilogue stores the statistics), before fuse_add_norm.
"""

from compiler.ir import Tensor, Weight
from compiler.passes.context import DEFAULT
from compiler.passes.patterns import whole_row_norm


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with norms folded into their reading linears."""
    graph = graph.copy()
    if context.quant is not None:  # quantized codes are of the checkpoint's weights, not diag(gamma) W
        graph.log("fold_norms", "declined: quantized linears read the norms' outputs")
        return graph
    folded = 0
    for norm in [op for op in graph.ops if op.kind in ("layernorm", "rmsnorm")]:
        readers = graph.consumers(norm.outputs[0])
        producer = graph.producer(norm.inputs["x"])
        if (not whole_row_norm(graph, norm) or not readers or norm.outputs[0] in graph.outputs.values()
                or any(op.kind != "linear" or op.attrs.get("layout") != "in_out" or "prologue" in op.attrs
                       for op in readers)
                or producer is None or producer.kind not in ("linear", "embed") or len(producer.outputs) != 1
                or graph.tensors[norm.inputs["x"]].view_of):
            continue
        stats = f"{norm.inputs['x']}.stats"
        graph.tensors[stats] = Tensor(stats)
        producer.outputs.append(stats)
        producer.attrs["row_stats"] = norm.kind
        for linear in readers:
            _fold(graph, norm, linear)
            linear.inputs["stats"] = stats
        graph.ops.remove(norm)
        folded += 1
    graph.prune_weights()
    graph.prune_tensors()
    graph.log("fold_norms", f"{folded} norms folded into their matmuls' weights")
    return graph


def _fold(graph, norm, linear):
    weight = graph.weights[linear.weights["weight"]]
    center = norm.kind == "layernorm"
    scale = norm.weights.get("weight")
    name = f"{weight.name}*{scale or norm.name}"
    graph.weights[name] = Weight(name, ("fold_scale", weight.name, scale, center), shape=weight.shape,
                                 dtype=weight.dtype)
    shift = norm.weights.get("bias")
    if shift:
        bias = linear.weights.get("bias")
        bias_name = f"{bias or linear.name + '.bias'}+{shift}@{weight.name}"
        graph.weights[bias_name] = Weight(bias_name, ("fold_bias", weight.name, shift, bias),
                                          shape=(weight.shape[1],), dtype=weight.dtype)
        linear.weights["bias"] = bias_name
    linear.weights["weight"] = name
    linear.inputs["x"] = norm.inputs["x"]
    linear.attrs["prologue"] = {"norm": norm.kind, "eps": norm.attrs["eps"]}
