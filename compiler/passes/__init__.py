"""The compiler passes, in the one order they run.

Each pass is a module with `run(graph, context) -> graph` (context: passes/context.PassContext,
the plan's max batch, target SMs, tile rules and quantization) returning a rewritten copy; rewrites several
passes share live in passes/patterns.py.
"""

from compiler.passes import (concat_gate_up, concat_qkv, fold_norms, fuse_add_norm, fuse_epilogues,
                             fuse_norm_rope, hoist_transposes, infer_shapes, merge_qk_rope, plan_buffers,
                             quantize_linears, store_out_in)
from compiler.passes.context import DEFAULT, PassContext  # noqa: F401

PIPELINE = (
    infer_shapes,
    hoist_transposes,
    concat_qkv,
    concat_gate_up,
    fuse_epilogues,
    fold_norms,
    fuse_add_norm,
    fuse_norm_rope,
    merge_qk_rope,
    store_out_in,
    infer_shapes,      # re-validate what the rewrites produced
    quantize_linears,
    plan_buffers,
)


def pass_name(compiler_pass):
    """A pass's name: its module's last component."""
    return compiler_pass.__name__.rsplit(".", 1)[-1]


def run_pipeline(graph, context=DEFAULT, progress=None):
    """Run every pass of PIPELINE in order with `context`; `progress(name)` is called before each."""
    for compiler_pass in PIPELINE:
        if progress is not None:
            progress(pass_name(compiler_pass))
        graph = compiler_pass.run(graph, context)
    return graph
