"""Merge the q and k rotary embeddings of an attention into one rope over both.

After concat_qkv the q and k columns sit side by side in the QKV matmul's output, so one rope
launch can rotate H + KVH heads at once (decode runs one launch per op: this saves one per
layer). The split that produced q and k now yields one [q | k] view; the merged rope writes one
[q | k] tensor that a new zero-copy split hands back as the old q and k outputs. Per-head norms
fused earlier (fuse_norm_rope) travel along: `norm_weight` (q heads) and `k_norm_weight`, with
`q_heads` telling them apart. Declines unless both ropes match (head_dim, theta, scaling, norm)
and read adjacent outputs of one split that only they read.
Order: after fuse_norm_rope, before store_out_in.
"""

from compiler.ir import Op, Tensor
from compiler.passes.context import DEFAULT
from compiler.passes.patterns import layer_prefix


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with each attention's q and k ropes merged."""
    graph = graph.copy()
    merged = 0
    for attention in [op for op in graph.ops if op.kind == "attention"]:
        ropes = [graph.producer(attention.inputs[role]) for role in ("q", "k")]
        if _mergeable(graph, *ropes):
            _merge(graph, *ropes)
            merged += 1
    graph.prune_tensors()
    graph.log("merge_qk_rope", f"{merged} q/k rope pairs -> 1 launch each")
    return graph


def _mergeable(graph, q_rope, k_rope):
    if not (q_rope and k_rope and q_rope.kind == k_rope.kind == "rope"):
        return False
    keys = ("head_dim", "theta", "scaling", "norm_eps")
    if any(q_rope.attrs.get(key) != k_rope.attrs.get(key) for key in keys) or "q_heads" in q_rope.attrs:
        return False
    split = graph.producer(q_rope.inputs["x"])
    if split is None or split.kind != "split" or graph.producer(k_rope.inputs["x"]) is not split:
        return False
    outputs = split.outputs
    index = outputs.index(q_rope.inputs["x"])
    if index + 1 >= len(outputs) or outputs[index + 1] != k_rope.inputs["x"]:
        return False
    return all(graph.consumers(rope.inputs["x"]) == [rope] for rope in (q_rope, k_rope))


def _merge(graph, q_rope, k_rope):
    split = graph.producer(q_rope.inputs["x"])
    index = split.outputs.index(q_rope.inputs["x"])
    widths = [q_rope.attrs["heads"] * q_rope.attrs["head_dim"], k_rope.attrs["heads"] * k_rope.attrs["head_dim"]]
    prefix = layer_prefix(q_rope)
    source, rotated = f"{prefix}qk", f"{prefix}qk_rope.out"
    graph.tensors[source], graph.tensors[rotated] = Tensor(source), Tensor(rotated)
    split.outputs[index:index + 2] = [source]
    split.attrs["sizes"][index:index + 2] = [sum(widths)]
    weights = dict(q_rope.weights)
    if "norm_weight" in k_rope.weights:
        weights["k_norm_weight"] = k_rope.weights["norm_weight"]
    attrs = {**q_rope.attrs, "heads": q_rope.attrs["heads"] + k_rope.attrs["heads"], "q_heads": q_rope.attrs["heads"]}
    rope = Op("rope", f"{prefix}qk_rope", {"x": source}, weights, [rotated], attrs, q_rope.where, q_rope.layer)
    unsplit = Op("split", f"{prefix}qk_rope.split", {"x": rotated}, {}, [q_rope.outputs[0], k_rope.outputs[0]],
                 {"sizes": widths}, q_rope.where, q_rope.layer)
    position = graph.ops.index(q_rope)
    graph.ops.remove(q_rope)
    graph.ops.remove(k_rope)
    graph.ops[position:position] = [rope, unsplit]
