"""`cgc serve PLAN` (and `python -m server PLAN`): the OpenAI-compatible HTTP server.

Starlette and uvicorn are imported when serving starts, so `cgc` itself runs without them.
"""

import argparse
import signal
import socket
import sys

from runtime.errors import CgcError, exit_status


def add_arguments(parser):
    """The serve options, shared by `cgc serve` and `python -m server`."""
    parser.add_argument("plan")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests that may wait for a slot; more get 429 (default 64)")
    parser.add_argument("--model-name", help="the model id clients name (default: the plan's file name)")
    parser.add_argument("--chat-template", metavar="FILE", help="Jinja chat template to use instead of the plan's")
    parser.add_argument("--device", default="auto", choices=("auto", "gpu", "cpu"))
    parser.add_argument("--ignore-eos", action="store_true",
                        help="generate max_tokens for every request, past end-of-sequence tokens (benchmarks)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds in-flight requests get to finish after SIGTERM (default 30)")
    parser.set_defaults(handler=serve)


def add_parser(commands):
    """Add the `serve` subcommand to cgc's subparsers."""
    add_arguments(commands.add_parser("serve", help="serve a plan over an OpenAI-compatible HTTP API"))


def add_chat_arguments(run_parser):
    """`cgc run --chat` options."""
    run_parser.add_argument("--chat", action="store_true",
                            help="interactive chat: one user message per stdin line, the reply streamed")
    run_parser.add_argument("--system", help="system message of the chat")
    run_parser.add_argument("--chat-template", metavar="FILE", help="Jinja chat template to use instead of the plan's")


def build_server(args):
    """(uvicorn server, listening socket) for parsed serve options."""
    try:
        import uvicorn

        from server.app import Service, create_app
    except ImportError as exc:
        raise CgcError(f"serving needs the 'serve' extra ({exc.name} is missing): pip install 'cgc[serve]'") from None
    from server.engine import Engine
    from server.metrics import Metrics
    from server.session import model_name, open_model
    if args.max_queue < 0:
        raise CgcError(f"--max-queue must be >= 0, got {args.max_queue}")
    executor, tokenizer, template = open_model(args.plan, args.device, args.chat_template)
    metrics = Metrics()
    eos = tokenizer.eos_token_ids if tokenizer is not None and not args.ignore_eos else ()
    engine = Engine(executor, tokenizer, eos, max_queue=args.max_queue, metrics=metrics)
    service = Service(engine, executor.plan, args.model_name or model_name(args.plan), tokenizer, template,
                      args.api_key, metrics)
    try:
        # uvicorn's own backlog: Python's default (128) reset connections when 256 clients came at once
        listener = socket.create_server((args.host, args.port), reuse_port=False, backlog=2048)
    except OSError as exc:
        raise CgcError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            engine.drain()  # stop admitting at once; in-flight requests finish
            super().handle_exit(sig, frame)

    config = uvicorn.Config(create_app(service), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=args.shutdown_timeout)
    return Server(config), listener, service


def serve(args):
    """Run the server until SIGTERM or Ctrl-C; returns normally (exit 0) after a SIGTERM."""
    server, listener, service = build_server(args)
    host, port = listener.getsockname()[:2]
    print(f"cgc: serving '{service.model_name}' ({service.engine.batch} slots, {service.engine.executor.name} "
          f"executor) on http://{host}:{port}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # uvicorn re-raises it after its graceful exit
    sys.setswitchinterval(0.0005)  # the engine thread gets the GIL back soon after the HTTP thread's turn
    server.run(sockets=[listener])
    print("cgc: server stopped", file=sys.stderr, flush=True)


def main(argv=None):
    """`python -m server`: serve a plan (exit 2 with a one-line error on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m server", description="Serve a cgc plan over an OpenAI-compatible API.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return exit_status(lambda: serve(args), args.debug)
