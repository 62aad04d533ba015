"""The `cgc` command line: compile, run, inspect.

`run` and `inspect` use the runtime only; `compile` imports the compiler lazily so that the
runtime path never loads it.
"""

import argparse
import os
import sys

from runtime.errors import CgcError


def _parse_set(values):
    import yaml
    overrides = {}
    for item in values or ():
        if "=" not in item:
            raise CgcError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _parse_ints(text, flag):
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CgcError(f"{flag} expects comma-separated integers, got {text!r}") from None


def _default_sms():
    from runtime.session import gpu_available
    if not gpu_available():
        return ()
    import cupy
    major, minor = cupy.cuda.Device().compute_capability[:1], cupy.cuda.Device().compute_capability[1:]
    return (int(major + minor),)


def _compile(args):
    from compiler.compile import CompileOptions, compile_plan, stderr_log
    from compiler.graph_loader import resolve_graph_path
    sms = _parse_ints(args.sm, "--sm") if args.sm not in (None, "none") else (() if args.sm == "none" else _default_sms())
    if not sms and args.sm != "none":
        stderr_log("no --sm given and no GPU here: the plan gets no GPU kernels (it runs on the NumPy executor)")
    graph_path = resolve_graph_path(args.graph)
    stem = os.path.splitext(os.path.basename(graph_path))[0] + (f"-{args.preset}" if args.preset else "")
    output = args.output or os.path.join("artifacts", f"{stem}{'-sm' + '-'.join(map(str, sms)) if sms else ''}.plan")
    options = CompileOptions(
        preset=args.preset, checkpoint=args.weights, overrides=_parse_set(args.set), dtype=args.dtype, sms=sms,
        max_batch=args.max_batch, max_seq=args.max_seq,
        prefill_buckets=_parse_ints(args.prefill_buckets, "--prefill-buckets"), seed=args.seed,
        weights_storage=args.weights_storage, cache_dir=args.cache_dir)
    compile_plan(graph_path, output, options, log=stderr_log)
    print(output)


def _run(args):
    from runtime.generate import generate_greedy
    from runtime.session import open_plan
    if args.tokens is None:
        raise CgcError("give the prompt as token ids with --tokens 464,3290 (text prompts need a plan with a tokenizer)")
    prompt = list(_parse_ints(args.tokens, "--tokens"))
    executor = open_plan(args.plan, device=args.device)

    def stream(index, token):
        print(token, end=",", flush=True)

    generated = generate_greedy(executor, [prompt], args.max_new_tokens, on_token=stream)
    print()
    if args.verbose:
        print(f"cgc: generated {len(generated[0])} tokens on the {executor.name} executor", file=sys.stderr)


def _inspect(args):
    from runtime.inspect_plan import describe
    from runtime.plan import load_plan
    print("\n".join(describe(load_plan(args.plan))))


def build_parser():
    """The argparse parser of `cgc`."""
    parser = argparse.ArgumentParser(prog="cgc", description="Ahead-of-time compiler and runtime for transformer inference.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    compile_cmd = commands.add_parser("compile", help="compile a graph YAML into a plan")
    compile_cmd.add_argument("graph", help="graph YAML path, or a shipped graph name (gpt2, llama, qwen2, qwen3)")
    compile_cmd.add_argument("-o", "--output", help="plan path (default: artifacts/<graph>[-<preset>][-smNN].plan)")
    compile_cmd.add_argument("--preset", help="named size preset of the graph (e.g. tile-medium, qwen3-0.6b)")
    compile_cmd.add_argument("--weights", metavar="CKPT_DIR", help="Hugging Face checkpoint dir (config.json + *.safetensors); default: seeded random init")
    compile_cmd.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config symbol (repeatable)")
    compile_cmd.add_argument("--sm", help="target SMs, e.g. 90 or 90,100,121; 'none' for a CPU-only plan (default: this machine's GPU, if any)")
    compile_cmd.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    compile_cmd.add_argument("--max-batch", type=int, default=1, help="sequences per program (default 1)")
    compile_cmd.add_argument("--max-seq", type=int, default=256, help="longest sequence, prompt + generated (default 256)")
    compile_cmd.add_argument("--prefill-buckets", default="64", help="prefill chunk lengths, e.g. 16,64,256 (default 64)")
    compile_cmd.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    compile_cmd.add_argument("--weights-storage", default="auto", choices=("auto", "embedded", "external"),
                             help="embed weights in the plan or write a sibling .safetensors (auto: external above 1 GiB)")
    compile_cmd.add_argument("--cache-dir", help="kernel compile cache (default artifacts/cache)")
    compile_cmd.set_defaults(handler=_compile)

    run_cmd = commands.add_parser("run", help="generate with a compiled plan")
    run_cmd.add_argument("plan")
    run_cmd.add_argument("--tokens", help="prompt token ids, comma-separated")
    run_cmd.add_argument("--max-new-tokens", type=int, default=20)
    run_cmd.add_argument("--device", default="auto", choices=("auto", "gpu", "cpu"))
    run_cmd.add_argument("-v", "--verbose", action="store_true")
    run_cmd.set_defaults(handler=_run)

    inspect_cmd = commands.add_parser("inspect", help="summarize a plan")
    inspect_cmd.add_argument("plan")
    inspect_cmd.set_defaults(handler=_inspect)
    return parser


def main(argv=None):
    """Entry point of the `cgc` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except CgcError as exc:
        if args.debug:
            raise
        print(f"cgc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
