"""The `cgc` command line: compile, run (and `run --chat`), serve, inspect.

`run` and `inspect` use the runtime only; `compile` imports the compiler lazily so that the
runtime path never loads it.
"""

import argparse
import os
import sys

import server.cli as server_cli
from runtime.errors import CgcError, exit_status


def _parse_set(values):
    from compiler.yaml_source import parse
    overrides = {}
    for item in values or ():
        _utf8(item, "--set")
        if "=" not in item:
            raise CgcError(f"--set expects key=value, got {item[:80]!r}")
        key, value = item.split("=", 1)
        if not key.strip().isidentifier():
            raise CgcError(f"--set {key.strip()[:80]!r}: a config key is a plain name, e.g. n_layer")
        overrides[key.strip()] = parse(value, f"--set {key.strip()}")
    return overrides


def _utf8(text, flag):
    """`text` from argv, refused when it was not valid UTF-8 (Python keeps such bytes as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CgcError(f"{flag}: not valid UTF-8 (byte {exc.start})") from None
    return text


def _parse_ints(text, flag):
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CgcError(f"{flag} expects comma-separated integers, got {text!r}") from None


def _targets(args):
    """Compile targets from --gpu or --sm; by default this machine's GPU (its real SM count), if any."""
    from compiler.targets import parse_gpus, parse_sms, target_for_gpu
    if args.gpu is not None and args.sm is not None:
        raise CgcError("give --sm or --gpu, not both")
    if args.gpu is not None:
        return parse_gpus(args.gpu)
    if args.sm is not None:
        return () if args.sm == "none" else parse_sms(args.sm)
    from runtime.session import gpu_available
    if not gpu_available():
        return ()
    import cupy
    device = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"].decode()
    return (target_for_gpu(name, int(device.compute_capability), device.attributes["MultiProcessorCount"]),)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that a compile's cleanup (temp files) runs."""


def _terminate(signum, frame):
    raise _Terminated()


def _compile(args):
    import signal
    from compiler.compile import CompileOptions, compile_plan, stderr_log
    signal.signal(signal.SIGTERM, _terminate)
    from compiler.graph_loader import resolve_graph_path
    from compiler.tiles import parse_overrides
    targets = _targets(args)
    sms = tuple(target.sm for target in targets)
    if not sms and args.sm != "none":
        stderr_log("no --sm given and no GPU here: the plan gets no GPU kernels (it runs on the NumPy executor)")
    graph_path = resolve_graph_path(args.graph)
    stem = (os.path.splitext(os.path.basename(graph_path))[0] + (f"-{args.preset}" if args.preset else "")
            + (f"-{args.quant}" if args.quant else ""))
    output = args.output or os.path.join("artifacts", f"{stem}{'-sm' + '-'.join(map(str, sms)) if sms else ''}.plan")
    options = CompileOptions(
        preset=args.preset, checkpoint=args.weights, overrides=_parse_set(args.set), dtype=args.dtype,
        max_batch=args.max_batch, max_seq=args.max_seq,
        prefill_buckets=(_parse_ints(args.prefill_buckets, "--prefill-buckets")
                         if args.prefill_buckets is not None else None), seed=args.seed,
        weights_storage=args.weights_storage, cache_dir=args.cache_dir, tokenizer=args.tokenizer,
        tile_rules=parse_overrides(args.tiles), targets=targets, quant=args.quant, group_size=args.group_size,
        prompt_logits=args.prompt_logits)
    compile_plan(graph_path, output, options, log=stderr_log)
    print(output)


def _run(args):
    from runtime.generate import generate
    from runtime.sampling import SamplingParams
    from runtime.session import open_plan
    from runtime.tokenizer import StreamDecoder, Tokenizer
    if args.chat:
        from server.chat import chat
        return chat(args)
    if (args.tokens is None) == (args.prompt is None):
        raise CgcError("give exactly one of --prompt TEXT or --tokens 464,3290")
    if args.max_new_tokens < 1:
        raise CgcError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    sampling = SamplingParams(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed).check()
    for text in args.stop or ():
        _utf8(text, "--stop")
    if args.prompt is not None:
        _utf8(args.prompt, "--prompt")
    executor = open_plan(args.plan, device=args.device)
    plan = executor.plan
    tokenizer = Tokenizer(plan["tokenizer"]) if plan.get("tokenizer") else None
    if args.prompt is not None:
        if tokenizer is None:
            raise CgcError(f"{args.plan}: plan has no tokenizer; give --tokens, or recompile with --tokenizer DIR")
        if not args.prompt:
            raise CgcError("the prompt is empty")
        prompt = tokenizer.encode(args.prompt,
                                  max_tokens=plan["limits"]["max_seq"] - max(args.max_new_tokens, 1))
        if not prompt:
            raise CgcError("the prompt tokenizes to no tokens")
    else:
        prompt = list(_parse_ints(args.tokens, "--tokens"))
    eos = () if args.ignore_eos or tokenizer is None else tuple(tokenizer.eos_token_ids)
    text_out = tokenizer is not None and args.prompt is not None
    decoder = StreamDecoder(tokenizer) if text_out else None

    def stream(index, token):
        print(decoder.push(token) if text_out else f"{token},", end="", flush=True)

    result = generate(executor, [prompt], args.max_new_tokens, sampling=sampling, eos_token_ids=eos,
                      stop_strings=tuple(args.stop or ()), tokenizer=tokenizer, on_token=stream)
    print(decoder.flush() if text_out else "")
    if args.stats:
        print(f"cgc: {result.stats()} on the {executor.name} executor; stopped: {result.finish_reasons[0]}",
              file=sys.stderr)


def _inspect(args):
    from runtime.inspect_plan import describe, describe_kernel
    from runtime.plan import load_plan
    plan = load_plan(args.plan)
    print("\n".join(describe(plan) if args.kernel is None else describe_kernel(plan, args.kernel)))


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
    compile_cmd.add_argument("--sm", help="target SMs, e.g. 90 or 90,100,121, each optionally with its SM count (87:16); "
                                          "'none' for a CPU-only plan (default: this machine's GPU, if any)")
    compile_cmd.add_argument("--gpu", help="target devices by name, e.g. h200, gb10, orin-agx, rtx-4090 "
                                           "(compiler/targets.py): their SM and SM count")
    compile_cmd.add_argument("--dtype", default="float32", choices=("float32", "tf32", "float16", "bfloat16"),
                             help="float32 (default) multiplies in float32; tf32 stores float32 but multiplies on "
                                  "TF32 tensor cores (faster, logits ~1e-3 relative from float32)")
    compile_cmd.add_argument("--quant", choices=("int8", "int4", "fp8"),
                             help="store linear weights quantized: int8 (per output channel), int4 (groups along "
                                  "the input features, --group-size) or fp8 (e4m3, per channel; SMs 89 and later)")
    compile_cmd.add_argument("--group-size", type=int, default=128, choices=(32, 64, 128),
                             help="input features per int4 scale (default 128)")
    compile_cmd.add_argument("--max-batch", type=int, default=1, help="sequences per program (default 1)")
    compile_cmd.add_argument("--max-seq", type=int, default=None,
                             help="longest sequence, prompt + generated (default 256, or the model's positions if fewer)")
    compile_cmd.add_argument("--prefill-buckets", default=None,
                             help="prefill chunk lengths, e.g. 16,64,256 (default 64, or --max-seq if less)")
    compile_cmd.add_argument("--prompt-logits", action="store_true",
                             help="prefill programs output the logits of every prompt position (scoring); by "
                                  "default only each sequence's last position's, which is all generation needs")
    compile_cmd.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    compile_cmd.add_argument("--weights-storage", default="auto", choices=("auto", "embedded", "external"),
                             help="embed weights in the plan or write a sibling .safetensors (auto: external above 1 GiB)")
    compile_cmd.add_argument("--cache-dir", help="kernel compile cache (default artifacts/cache)")
    compile_cmd.add_argument("--tokenizer", metavar="DIR", help="tokenizer.json or vocab.json + merges.txt to store in the plan (default: the --weights dir)")
    compile_cmd.add_argument("--tiles", action="append", metavar="FIELD=VALUE",
                             help="override a tile rule (compiler/tiles.py TileRules; tuning runs; repeatable)")
    compile_cmd.set_defaults(handler=_compile)

    run_cmd = commands.add_parser("run", help="generate with a compiled plan")
    run_cmd.add_argument("plan")
    run_cmd.add_argument("--prompt", help="prompt text (needs a plan with a tokenizer); output is streamed as text")
    run_cmd.add_argument("--tokens", help="prompt token ids, comma-separated; output is streamed as ids")
    run_cmd.add_argument("--max-new-tokens", type=int, default=20)
    run_cmd.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    run_cmd.add_argument("--top-k", type=int, default=0)
    run_cmd.add_argument("--top-p", type=float, default=1.0)
    run_cmd.add_argument("--repetition-penalty", type=float, default=1.0)
    run_cmd.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible draws)")
    run_cmd.add_argument("--stop", action="append", metavar="TEXT", help="stop when the output contains TEXT (repeatable)")
    run_cmd.add_argument("--ignore-eos", action="store_true", help="do not stop at the end-of-sequence token")
    run_cmd.add_argument("--device", default="auto", choices=("auto", "gpu", "cpu"))
    run_cmd.add_argument("--stats", action="store_true", help="print prompt and decode throughput to stderr")
    server_cli.add_chat_arguments(run_cmd)
    run_cmd.set_defaults(handler=_run)

    server_cli.add_parser(commands)

    inspect_cmd = commands.add_parser("inspect", help="summarize a plan")
    inspect_cmd.add_argument("plan")
    inspect_cmd.add_argument("--kernel", type=int, metavar="N",
                             help="show kernel N only: its registers, spills, shared memory and PTX instruction mix")
    inspect_cmd.set_defaults(handler=_inspect)
    return parser


def main(argv=None):
    """Entry point of the `cgc` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return exit_status(lambda: args.handler(args), args.debug)
    except _Terminated:
        return 143


if __name__ == "__main__":
    sys.exit(main())
