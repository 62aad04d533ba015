"""NumPy reference of templates/sample.py.jinja."""

import numpy as np

SAMPLE_STEPS = 24  # bisection halvings, as templates/sample.py.jinja


def sample(constants, logits, start_pos, seq_lens, params, options, eos, history, next_tokens, next_start, next_lens,
           scratch, *argmax):
    """Choose each acting sequence's next token and feed it to the decode inputs (README.md).
    With `argmax` (the logits matmul's per-group largest values and their ids, see group_argmax),
    a greedy pick without penalty reads those instead of the logits row."""
    seq, prefill = constants["seq"], constants["phase"] == "prefill"
    lengths, starts = seq_lens.read(), start_pos.read()
    settings, choices = params.read(), options.read()
    stops = set(int(t) for t in eos.read()) - {-1}
    limit = history.array.shape[1]
    for b in range(len(lengths)):
        length = int(lengths[b])
        position = int(starts[b]) + length
        top_k, seed, prompt_len, cancel = (int(v) for v in choices[b])
        if length <= 0 or (prefill and position != prompt_len):
            continue
        if cancel:
            next_lens.array[b] = 0
            continue
        if position >= limit:
            next_lens.array[b] = 0
            continue
        row = b if constants.get("last_rows") else b * seq + length - 1
        if argmax and settings[b][0] == 0 and settings[b][2] == 1:
            values, ids = argmax[0].read()[row], argmax[1].read()[row]
            chosen = int(ids[values == values.max()].min())
        else:
            chosen = _choose(logits.read()[row], settings[b], top_k, seed, position, history.array[b, :position])
        history.array[b, position] = next_tokens.array[b, 0] = chosen
        next_start.array[b] = position
        if chosen in stops:
            next_lens.array[b] = 0
        elif prefill:
            next_lens.array[b] = 1


def _choose(raw, settings, top_k, seed, position, seen):
    temperature, top_p, penalty = (np.float32(v) for v in settings[:3])
    x = raw.astype(np.float32).copy()
    if penalty != 1:
        ids = np.unique(seen)
        x[ids] = np.where(raw[ids] > 0, raw[ids] / penalty, raw[ids] * penalty)
    if temperature <= 0:
        return int(np.argmax(x))
    x = x / temperature
    best = x.max()
    threshold = x.min()
    if 0 < top_k < len(x):  # bisection for the k-th largest value, as the kernel does
        high = best
        for _ in range(SAMPLE_STEPS):
            middle = np.float32((threshold + high) * np.float32(0.5))
            if (x >= middle).sum() >= top_k:
                threshold = middle
            else:
                high = middle
    if top_p < 1:
        weights = np.exp(x - best)
        target = top_p * weights[x >= threshold].sum()
        high = best
        for _ in range(SAMPLE_STEPS):
            middle = np.float32((threshold + high) * np.float32(0.5))
            if weights[x >= middle].sum() >= target:
                threshold = middle
            else:
                high = middle
    ids = np.arange(len(x), dtype=np.uint32)
    score = np.where(x >= threshold, x - np.log(-np.log(hash_uniform(seed, position, ids))), -np.inf)
    return int(np.argmax(score))


def hash_uniform(seed, position, ids):
    """Uniform (0, 1) float32 per token id from a 32-bit multiply-xorshift hash of (seed, position,
    id), bit-identical to the sampler kernel's int32 arithmetic."""
    with np.errstate(over="ignore"):
        mixed = (ids.astype(np.uint32) * np.uint32(0x2C1B3C6D) + np.uint32(seed * 0x297A2D39 & 0xFFFFFFFF)
                 + np.uint32(position * 0x1B873593 & 0xFFFFFFFF))
        mixed ^= mixed >> np.uint32(16)
        mixed *= np.uint32(0x7FEB352D)
        mixed ^= mixed >> np.uint32(15)
        mixed *= np.uint32(0x6A09E667)
        mixed ^= mixed >> np.uint32(16)
    # 23 bits, so that the largest value plus 0.5 stays below 2^23 and u below 1.0 in fp32
    return (((mixed >> np.uint32(9)) & np.uint32(0x7FFFFF)).astype(np.float32) + np.float32(0.5)) / np.float32(8388608)
