"""The compiler passes, in the one order they run. Each is `run(graph) -> graph` (store_out_in also
takes the plan's max batch and target SMs)."""

from compiler.passes import (concat_gate_up, concat_qkv, fold_norms, fuse_add_norm, fuse_epilogues,
                             fuse_norm_rope, hoist_transposes, infer_shapes, merge_qk_rope, plan_buffers,
                             store_out_in)

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
    plan_buffers,
)


def run_pipeline(graph, progress=None, max_batch=1, sms=()):
    """Run every pass of PIPELINE in order; `progress(name)` is called before each. store_out_in
    also reads `max_batch`, the sequences the plan decodes at once, and `sms`, its target SMs."""
    for compiler_pass in PIPELINE:
        if progress is not None:
            progress(compiler_pass.__name__.rsplit(".", 1)[-1])
        if compiler_pass is store_out_in:
            graph = compiler_pass.run(graph, max_batch, sms)
        else:
            graph = compiler_pass.run(graph)
    return graph
