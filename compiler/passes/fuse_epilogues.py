"""Fold elementwise work that follows a matmul into the matmul's epilogue.

A `linear` gains, in order: `bias` (its own bias), `gelu` (sole consumer is a gelu),
`silu_mul` (its output is split in two equal halves whose only consumer is one silu_mul, as
concat_gate_up leaves it), `residual` (sole consumer is an add whose other operand exists before
the linear). Declines when the output has several consumers or is a graph output.
Order: after the concatenations, before fold_norms (a norm then reads a linear's output, whose
epilogue can store its row statistics) and fuse_add_norm (which takes the adds left over).
"""

from compiler.passes.context import DEFAULT

_ORDER = ("bias", "gelu", "silu_mul", "residual")


def run(graph, context=DEFAULT):
    """Return a copy of `graph` with epilogues fused into linears."""
    graph = graph.copy()
    counts = dict.fromkeys(_ORDER, 0)
    for linear in [op for op in graph.ops if op.kind == "linear"]:
        epilogue = list(linear.attrs.get("epilogue", ()))
        if "bias" in linear.weights and "bias" not in epilogue:
            epilogue.append("bias")
            counts["bias"] += 1
        while True:
            step = _next_fusion(graph, linear, epilogue)
            if step is None:
                break
            epilogue.append(step)
            counts[step] += 1
        linear.attrs["epilogue"] = tuple(epilogue)
    graph.prune_tensors()
    summary = ", ".join(f"{name} x{count}" for name, count in counts.items() if count) or "nothing fused"
    graph.log("fuse_epilogues", summary)
    return graph


def _sole_consumer(graph, tensor_name):
    if tensor_name in graph.outputs.values():
        return None
    users = graph.consumers(tensor_name)
    return users[0] if len(users) == 1 else None


def _later(epilogue, step):
    return any(_ORDER.index(done) >= _ORDER.index(step) for done in epilogue)


def _next_fusion(graph, linear, epilogue):
    output = linear.outputs[0]
    user = _sole_consumer(graph, output)
    if user is None:
        return None
    if user.kind == "gelu" and not _later(epilogue, "gelu"):
        linear.outputs = list(user.outputs)
        graph.ops.remove(user)
        return "gelu"
    if user.kind == "split" and not _later(epilogue, "silu_mul") and len(user.outputs) == 2:
        gate, up = user.outputs
        silu = _sole_consumer(graph, gate)
        if (silu is not None and silu.kind == "silu_mul" and silu.inputs == {"gate": gate, "up": up}
                and _sole_consumer(graph, up) is silu and user.attrs["sizes"][0] == user.attrs["sizes"][1]):
            linear.outputs = list(silu.outputs)
            graph.ops.remove(user)
            graph.ops.remove(silu)
            return "silu_mul"
    if user.kind == "add" and not _later(epilogue, "residual"):
        other = user.inputs["b"] if user.inputs["a"] == output else user.inputs["a"]
        if other != output and _defined_before(graph, other, linear):
            linear.inputs["residual"] = other
            linear.outputs = list(user.outputs)
            graph.ops.remove(user)
            return "residual"
    return None


def _defined_before(graph, tensor_name, op):
    producer = graph.producer(tensor_name)
    if producer is None:
        return tensor_name in graph.tensors
    return graph.ops.index(producer) < graph.ops.index(op)
