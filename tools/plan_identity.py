"""Check that two commits compile byte-identical plans and kernels (a refactor's proof).

    python tools/plan_identity.py [--base 7d328c9] [--sm 90] [--cache-dir artifacts/cache]

Compiles, in a git worktree of `--base` and in this working tree, the plans the GPU tests build
(tests/gpu/gpu_cases.py: the HF parity plans at max batch 1 and 2, the kernel sweep), the shapes
of the benchmark plans (benchmarks/decode.py at batch 1 and 8, benchmarks/forward.py; decoder
stacks cut to 2 layers, which changes no kernel: every layer's launches are the same) and the
standalone GPU kernel cases (tests/gpu/export_test_cubins.py), all for `--sm` (kernels rendered
and exported through tileiras; the shared kernel cache makes the second tree fast). Then it
compares, per plan, the body without `created` and `compiler` (weights by digest), and every
rendered kernel source and cubin. Prints one line per difference and a summary; exits 1 on any.
The dump half (`--dump DIR`) runs with the tree under test first on PYTHONPATH, so it may only
use what both commits have: compile_plan, CompileOptions, cutile_export.render, the GPU test
case modules.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_LAYERS = 2
DECODE_BATCHES = (1, 8)
DECODE_NEW_TOKENS = 128  # benchmarks/decode.py's default: its plans' max sequence


def _digest(data):
    return hashlib.sha256(data).hexdigest()


def _plain(value):
    """The body with bytes replaced by their digests (JSON-comparable)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"sha256": _digest(bytes(value)), "bytes": len(value)}
    return value


def _plan_sets(sm, cache_dir):
    """(name, graph, CompileOptions or a checkpoint builder) of every plan to compare."""
    from compiler.compile import CompileOptions
    from tests.gpu import gpu_cases
    plans = []
    for case in gpu_cases.KERNEL_CASES:
        options = gpu_cases.kernel_case_options(case, sm)
        options.cache_dir = cache_dir
        plans.append((case[0], case[1], options, None))
    for index, family in enumerate(gpu_cases.PARITY_FAMILIES):
        for max_batch in (1, 2):
            plans.append((f"parity-{family}-b{max_batch}", family, None, (family, index, max_batch)))
    from benchmarks import decode
    layers = {"gpt2": "n_layer", "qwen3": "num_hidden_layers"}  # the benchmark's small models (7B ones take minutes)
    for key in layers:
        model = decode.MODELS[key]
        for batch in DECODE_BATCHES:
            options = CompileOptions(preset=model["preset"], overrides={layers[key]: BENCH_LAYERS},
                                     dtype=model["dtype"], sms=(sm,), max_batch=batch,
                                     max_seq=decode.max_seq(DECODE_NEW_TOKENS), prefill_buckets=(decode.PROMPT,),
                                     cache_dir=cache_dir, weights_storage="embedded")
            plans.append((f"decode-{key}-b{batch}", model["graph"], options, None))
    from benchmarks import forward
    for workload in forward.WORKLOADS:
        config = dict(workload["config"], n_layer=min(workload["config"]["n_layer"], BENCH_LAYERS))
        options = CompileOptions(overrides=config, dtype=workload["dtype"], sms=(sm,), max_batch=forward.BATCH,
                                 max_seq=forward.SEQ, prefill_buckets=(forward.SEQ,), cache_dir=cache_dir)
        plans.append(("forward-" + workload["name"].replace(" ", "-"), "gpt2", options, None))
    return plans


def dump(out_dir, sm, cache_dir):
    """Compile every plan and GPU kernel case of the tree first on sys.path into `out_dir`: one JSON
    per plan (body sans created/compiler, bytes as digests) and the rendered kernel sources."""
    from compiler import cutile_export
    from compiler.compile import compile_plan
    from tests.gpu import gpu_cases
    from tests.gpu.export_test_cubins import export_all
    os.makedirs(out_dir, exist_ok=True)
    sources = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, graph, options, parity in _plan_sets(sm, cache_dir):
            if parity:
                from tests.hf_reference import build_model, save_checkpoint
                family, index, max_batch = parity
                checkpoint = os.path.join(workdir, family)
                if not os.path.exists(checkpoint):
                    save_checkpoint(build_model(family, seed=index), checkpoint)
                options = gpu_cases.parity_options(checkpoint, sm, max_batch)
                options.cache_dir = cache_dir
            print(f"plan_identity: compiling {name}", file=sys.stderr, flush=True)
            body = compile_plan(graph, os.path.join(workdir, "plan.plan"), options)
            for kernel in body["kernels"]:
                if kernel.get("sm") is not None:
                    source = cutile_export.render(kernel["template"], kernel["constants"])
                    sources[_digest(source.encode())] = source
            body = {key: value for key, value in body.items() if key not in ("created", "compiler")}
            with open(os.path.join(out_dir, f"{name}.json"), "w", encoding="utf-8") as handle:
                json.dump(_plain(body), handle, indent=0, sort_keys=True)
        print("plan_identity: exporting the GPU kernel cases", file=sys.stderr, flush=True)
        manifest = export_all(sm, os.path.join(workdir, "cubins"), cache_dir)
        cases = {}
        for entry in manifest["cases"]:
            entry = dict(entry)
            entry.pop("export_seconds")
            with open(os.path.join(workdir, "cubins", entry["cubin"]), "rb") as handle:
                entry["cubin_sha256"] = _digest(handle.read())
            source = cutile_export.render(entry["template"], entry["constants"])
            sources[_digest(source.encode())] = source
            entry["source_sha256"] = _digest(source.encode())
            cases[entry["name"]] = entry
    with open(os.path.join(out_dir, "gpu-kernel-cases.json"), "w", encoding="utf-8") as handle:
        json.dump(cases, handle, indent=0, sort_keys=True)
    with open(os.path.join(out_dir, "sources.json"), "w", encoding="utf-8") as handle:
        json.dump(sources, handle, indent=0, sort_keys=True)


def compare(base_dir, head_dir):
    """Lines naming every difference between two dumps."""
    differences = []
    names = sorted(set(os.listdir(base_dir)) | set(os.listdir(head_dir)))
    for name in names:
        paths = [os.path.join(directory, name) for directory in (base_dir, head_dir)]
        if not all(os.path.exists(path) for path in paths):
            differences.append(f"{name}: only in {'base' if os.path.exists(paths[0]) else 'head'}")
            continue
        base, head = (json.load(open(path, encoding="utf-8")) for path in paths)
        if base != head:
            keys = sorted(k for k in set(base) | set(head) if base.get(k) != head.get(k))
            differences.append(f"{name}: differs in {', '.join(keys[:8])}")
    return differences


def _run_dump(tree, out_dir, sm, cache_dir):
    env = dict(os.environ, PYTHONPATH=tree, CGC_CACHE_DIR=cache_dir)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--dump", out_dir, "--sm", str(sm),
                    "--cache-dir", cache_dir], cwd=tree, env=env, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="7d328c9", help="commit to compare this working tree with")
    parser.add_argument("--sm", type=int, default=90)
    parser.add_argument("--cache-dir", default=os.path.join(HERE, "artifacts", "cache"))
    parser.add_argument("--dump", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--keep", metavar="DIR", help="keep the two dumps under DIR (a base dump already "
                        "there is reused)")
    args = parser.parse_args()
    cache_dir = os.path.abspath(args.cache_dir)
    if args.dump:
        dump(args.dump, args.sm, cache_dir)
        return 0
    work = os.path.abspath(args.keep or tempfile.mkdtemp(prefix="plan-identity-"))
    if not os.path.exists(os.path.join(work, "base", "sources.json")):
        tree = os.path.join(work, "base-tree")
        subprocess.run(["git", "worktree", "add", "--detach", tree, args.base], cwd=HERE, check=True,
                       stdout=subprocess.DEVNULL)
        try:
            print(f"plan_identity: dumping {args.base}", file=sys.stderr, flush=True)
            _run_dump(tree, os.path.join(work, "base"), args.sm, cache_dir)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=HERE, check=False)
    print("plan_identity: dumping the working tree", file=sys.stderr, flush=True)
    _run_dump(HERE, os.path.join(work, "head"), args.sm, cache_dir)
    differences = compare(os.path.join(work, "base"), os.path.join(work, "head"))
    plans = [n for n in os.listdir(os.path.join(work, "head")) if n not in ("sources.json", "gpu-kernel-cases.json")]
    with open(os.path.join(work, "head", "sources.json"), encoding="utf-8") as handle:
        kernels = len(json.load(handle))
    with open(os.path.join(work, "head", "gpu-kernel-cases.json"), encoding="utf-8") as handle:
        cases = len(json.load(handle))
    for line in differences:
        print(line)
    verdict = "identical" if not differences else f"{len(differences)} files differ"
    print(f"{len(plans)} plans, {cases} GPU kernel cases, {kernels} distinct rendered kernel sources "
          f"(sm_{args.sm}), {args.base} vs working tree: {verdict}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
