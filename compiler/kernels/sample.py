"""The on-device sampler ending each program: templates/sample.py.jinja."""

from compiler.tiles import pow2


def roles(constants):
    """logits, start_pos, seq_lens, params, options, eos, history, next_tokens, next_start,
    next_lens, scratch, (argmax_values, argmax_ids)."""
    partials = ("argmax_values", "argmax_ids") if constants.get("argmax_partials") else ()
    return ("logits", "start_pos", "seq_lens", "params", "options", "eos", "history", "next_tokens", "next_start",
            "next_lens", "scratch", *partials)


def tiles(rules, sm, constants, shapes):
    """Power-of-two blocks over the logits row, the history row and the EOS slots."""
    tiles = {"block": min(4096, pow2(shapes["logits"][1])), "history_block": min(1024, pow2(shapes["history"][1])),
             "eos_slots": pow2(shapes["eos"][0])}
    if constants.get("argmax_partials"):
        tiles["argmax_block"] = min(4096, pow2(shapes["argmax_values"][1]))
    return tiles


def grid(constants, shapes):
    """One CTA per sequence."""
    return (shapes["start_pos"][0], 1, 1)
