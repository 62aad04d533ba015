"""A human-readable summary of a plan: programs, launches, kernels, memory, passes."""

from collections import Counter

from runtime.cubin_info import instruction_mix, ptx, resources
from runtime.errors import PlanError
from runtime.step_bytes import decode_weight_bytes, kv_bytes_per_position


def _mb(nbytes):
    return f"{nbytes / 1e6:.2f} MB"


def describe(plan):
    """Lines describing `plan` (what `cgc inspect` prints)."""
    model, limits, regions = plan["model"], plan["limits"], plan["regions"]
    lines = [
        f"plan       {plan.get('path', '')}",
        f"model      {model['name']} ({model['family']}), {model['dtype']}, from {model['graph_file']}",
        f"compiler   cgc {plan['compiler']['version']}, cuda-tile {plan['compiler']['cuda_tile'] or '-'}, "
        f"tileiras {plan['compiler'].get('tileiras') or '-'}, created {plan['created']}",
        f"targets    {', '.join(_target(plan, sm) for sm in plan['targets']) or 'none (CPU executor only)'}",
        f"limits     max batch {limits['max_batch']}, max seq {limits['max_seq']}, "
        f"prefill buckets {limits['prefill_buckets']}",
        "",
        "programs",
    ]
    for name, program in plan["programs"].items():
        templates = Counter(plan["kernels"][launch["kernel"]]["template"] for launch in program["launches"])
        detail = ", ".join(f"{t} x{n}" for t, n in sorted(templates.items()))
        lines.append(f"  {name:<14} batch {program['batch']:>3} x seq {program['seq']:>5}: "
                     f"{len(program['launches'])} launches ({detail})")
    prefill = next((p for p in plan["programs"].values() if p["seq"] > 1 and "logits" in p["outputs"]), None)
    if prefill is not None:
        every = prefill["outputs"]["logits"]["shape"][0] > prefill["batch"]
        lines.append("  prefill logits: " + ("every prompt position (--prompt-logits)" if every
                                             else "each sequence's last position"))
    generic = [k for k in plan["kernels"] if k.get("sm") is None]
    specialized = [k for k in plan["kernels"] if k.get("sm") is not None]
    cubin_bytes = sum(len(c["image"]) for k in specialized for c in k["cubins"].values())
    lines += ["", f"kernels    {len(generic)} distinct specs; {len(specialized)} SM-specific cubins "
                  f"({cubin_bytes / 1e6:.2f} MB): threads a CTA (x), registers (r) and spilled local bytes (l) "
                  "a thread, shared memory (s); --kernel N for one kernel's PTX mix"]
    width = max((len(kernel["template"]) for kernel in plan["kernels"]), default=0)
    for index, kernel in enumerate(plan["kernels"]):
        constants = ", ".join(f"{k}={v}" for k, v in kernel["constants"].items())
        where = "generic"
        if kernel.get("sm") is not None:
            cubin = kernel["cubins"][f"sm_{kernel['sm']}"]
            where = f"sm_{kernel['sm']} x{cubin['block'][0]} {_resources(cubin['image'])}"
        lines.append(f"  [{index:>2}] {kernel['template']:<{width}} {where:<18} {constants}")
    buffers = plan["buffers"]
    weights = plan["weights"]
    naive = buffers["naive_row_bytes"]
    saved = 100.0 * (1 - buffers["arena_row_bytes"] / naive) if naive else 0.0
    lines += [
        "",
        "memory",
        f"  arena      {_mb(regions['arena'])} ({buffers['arena_row_bytes']} B per token row; naive "
        f"{naive} B per row without reuse: {saved:.0f}% saved)",
        f"  kv cache   {_mb(regions['kv'])}",
        f"  io         {_mb(regions['io'])} (program inputs/outputs, sampler state)",
        f"  scratch    {_mb(regions['scratch'])} (split decode attention's partial results, "
        "the prefill LM head's rows, int4 prefill's dequantized weight)",
        f"  weights    {_mb(regions['weights'])} in {len(weights['table'])} tensors, {weights['storage']}"
        + (f" ({weights['file']})" if weights["storage"] == "external" else ""),
    ]
    lines += _quantization(plan)
    lines += _decode_step(plan)
    lines += ["", "passes"]
    lines += [f"  {name:<17} {summary}" for name, summary in plan["passes"]]
    return lines


def _resources(image):
    """'r128 l72 s28.9K': registers per thread, local (spilled) bytes per thread, shared KB."""
    used = resources(image)
    if used is None:
        return "r? l? s?"
    return f"r{used['registers']} l{used['local_bytes']} s{used['shared_bytes'] / 1e3:.1f}K"


def describe_kernel(plan, index, top=16):
    """Lines on kernel `index` of `plan` (`cgc inspect --kernel N`): its spec and, per cubin, what
    it uses and the most frequent instructions of its embedded PTX."""
    kernels = plan["kernels"]
    if not 0 <= index < len(kernels):
        raise PlanError(f"{plan.get('path', 'plan')}: --kernel {index}: the plan has kernels 0 to {len(kernels) - 1}")
    kernel = kernels[index]
    lines = [f"kernel [{index}] {kernel['template']}, " + ", ".join(f"{k}={v}" for k, v in kernel["constants"].items())]
    if not kernel["cubins"]:
        lines.append("  generic spec: no cubin (the SM-specific kernels are listed by `cgc inspect`)")
    for target, cubin in kernel["cubins"].items():
        used = resources(cubin["image"])
        lines.append(f"  {target}: symbol {cubin['symbol']}, {cubin['block'][0]} threads a CTA, "
                     f"{len(cubin['image'])} bytes")
        lines.append("    " + ("resources unreadable (not a cubin tileiras wrote)" if used is None else
                              f"{used['registers']} registers and {used['local_bytes']} bytes of local memory "
                              f"(spills) a thread, {used['shared_bytes']} bytes of shared memory"))
        text = ptx(cubin["image"])
        if text is not None:
            mix = instruction_mix(text)
            lines.append(f"    PTX: {sum(mix.values())} instructions; most frequent: "
                         + ", ".join(f"{op} {n}" for op, n in mix.most_common(top)))
    return lines


def _quantization(plan):
    """Lines on which linears read quantized weights, in which mode, and their stored bytes."""
    record = plan.get("quantization")
    if not record:
        return ["", "quantization  none (16/32-bit weights; cgc compile --quant int8|int4|fp8)"]
    modes = Counter(entry["mode"] for entry in record["linears"].values())
    groups = f", int4 groups of {record['group_size']} input features" if record.get("group_size") else ""
    origin = ("" if record["source"] == "compile" else
              f" (codes of the {record['source'].upper()} checkpoint, kept; its float linears quantized here)")
    lines = ["", f"quantization  --quant {record['mode']}{groups}: "
                 + ", ".join(f"{mode} x{count}" for mode, count in sorted(modes.items())) + " linears" + origin]
    for name, entry in record["linears"].items():
        if entry["mode"] != record["mode"]:
            lines.append(f"  {name}: {entry['mode']} (the LM head takes int8 in int4 mode: docs/quantization.md)")
    parts = Counter()
    for entry in plan["weights"]["table"]:
        parts[entry.get("quant", {}).get("part", "unquantized")] += entry["nbytes"]
    lines.append("  stored     " + ", ".join(f"{part} {_mb(parts[part])}" for part in ("codes", "scale", "min", "unquantized")
                                          if part in parts)
                 + " (embeddings, norms and biases stay unquantized)")
    return lines


def _target(plan, sm):
    """`sm_87 (Jetson Orin Nano 8GB, 8 SMs)`: a target with the device its tiles were chosen for."""
    device = (plan.get("devices") or {}).get(f"sm_{sm}")
    if not device:
        return f"sm_{sm}"
    return f"sm_{sm} ({device['title'] + ', ' if device.get('title') else ''}{device['sm_count']} SMs)"


def _decode_step(plan):
    """Lines on what a decode step reads and, per target, the device's memory-bandwidth floor."""
    weight_bytes = decode_weight_bytes(plan)
    if not weight_bytes:
        return []
    batch = plan["programs"]["decode"]["batch"]
    lines = ["", "decode step",
             f"  weights    {_mb(weight_bytes)} read per step (gathered tables count one row a sequence)",
             f"  kv cache   {kv_bytes_per_position(plan) / 1e3:.1f} KB more per cached position of each sequence"]
    for sm in plan["targets"]:
        device = (plan.get("devices") or {}).get(f"sm_{sm}") or {}
        where = f"sm_{sm}, {device['sm_count']} SMs" if device.get("sm_count") else f"sm_{sm}"
        if device.get("bandwidth_gbs"):
            floor = batch * device["bandwidth_gbs"] * 1e9 / weight_bytes
            lines.append(f"  {where} ({device['title']}, {device['bandwidth_gbs']:g} GB/s): floor "
                         f"{floor:,.0f} tokens/s at batch {batch} (weights alone)")
        else:
            lines.append(f"  {where}: no device named, no floor (compile with --gpu NAME)")
    return lines
