"""`cgc run PLAN --chat`: an interactive chat on the slot path the server uses.

Each stdin line is a user message; the conversation is rendered with the plan's chat template,
prefilled into a slot and the reply streamed to stdout as text. EOF (Ctrl-D) ends the chat.
"""

import sys

from runtime.errors import CgcError
from runtime.generate import Sequence, Slots
from runtime.sampling import SamplingParams
from server.text import TextStream


def chat(args):
    """Run the chat loop of `cgc run --chat` on parsed run options."""
    from server.session import open_model
    if args.prompt is not None or args.tokens is not None:
        raise CgcError("--chat reads messages from stdin; give no --prompt or --tokens")
    executor, tokenizer, template = open_model(args.plan, args.device, args.chat_template)
    if tokenizer is None:
        raise CgcError(f"{args.plan}: plan has no tokenizer; recompile with --weights DIR or --tokenizer DIR")
    if template is None:
        raise CgcError(f"{args.plan}: plan has no chat template; recompile with --weights DIR holding one "
                       f"(tokenizer_config.json or chat_template.jinja), or give --chat-template FILE")
    sampling = SamplingParams(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed).check()
    slots = Slots(executor, () if args.ignore_eos else tokenizer.eos_token_ids)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    max_seq = executor.plan["limits"]["max_seq"]
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        prompt = tokenizer.encode(template.render(messages), add_special_tokens=False)  # the template has BOS
        room = max_seq - len(prompt)
        if room < 1:
            messages.pop()
            print(f"cgc: the conversation has {len(prompt)} tokens, the plan holds {max_seq}; "
                  f"start a new chat", file=sys.stderr, flush=True)
            continue
        reply = _reply(slots, tokenizer, prompt, min(args.max_new_tokens, room), sampling, tuple(args.stop or ()))
        messages.append({"role": "assistant", "content": reply})


def _reply(slots, tokenizer, prompt, max_tokens, sampling, stop):
    """Generate and print one reply; returns its text."""
    sequence = Sequence(prompt, max_tokens, sampling)
    text = TextStream(tokenizer, stop)

    def show(sequence, token):
        if sequence.finish_reason == "eos":
            return
        print(text.push(token), end="", flush=True)
        if text.stopped:
            slots.finish(sequence, "stop")

    slots.admit([sequence])
    while slots.running():
        if slots.step():
            slots.poll(show)
        else:
            slots.poll(show, wait=True)
    slots.poll(wait=True)
    print(text.flush(), flush=True)
    return text.text
