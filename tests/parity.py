"""Checks shared by the CPU and GPU parity tests: a plan's executor against a HF model."""

import numpy as np

PROMPT_LENGTHS = (13, 9)
DECODE_STEPS = 8


def relative_error(result, reference):
    """max |result - reference| / max |reference|."""
    return float(np.abs(result - reference).max() / np.abs(reference).max())


def hf_logits(model, tokens):
    """HF logits [len, V] of one token sequence, as float32 NumPy."""
    import torch
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(torch.tensor([tokens], device=device)).logits[0].float().cpu().numpy()


def prefill_rows(logits, batch, b, length, bucket):
    """(positions, their logits) of sequence b (`length` tokens) in a prefill program's logits:
    every position with a --prompt-logits plan ([batch * bucket, V]), else the last ([batch, V])."""
    if len(logits) == batch * bucket:
        return slice(0, length), logits[b * bucket:b * bucket + length]
    assert len(logits) == batch, logits.shape
    return slice(length - 1, length), logits[b:b + 1]


def check_prefill_and_decode(model, executor, bound, bucket=16):
    """Two prompts of different lengths prefilled in one batch, then 8 decode steps; returns the worst error."""
    vocab = model.config.vocab_size
    rng = np.random.default_rng(7)
    sequences = [list(rng.integers(0, vocab, size=n + DECODE_STEPS)) for n in PROMPT_LENGTHS]
    references = [hf_logits(model, seq) for seq in sequences]
    executor.reset()
    tokens = np.zeros((2, bucket), dtype=np.int32)
    for b, n in enumerate(PROMPT_LENGTHS):
        tokens[b, :n] = sequences[b][:n]
    logits = executor.run(f"prefill_{bucket}", tokens, [0, 0], list(PROMPT_LENGTHS))["logits"]
    worst = 0.0
    for b, n in enumerate(PROMPT_LENGTHS):
        positions, rows = prefill_rows(logits, 2, b, n, bucket)
        error = relative_error(rows, references[b][positions])
        assert error < bound, ("prefill", b, error)
        worst = max(worst, error)
    for step in range(DECODE_STEPS):
        positions = [n + step for n in PROMPT_LENGTHS]
        step_tokens = [[sequences[b][positions[b]]] for b in range(2)]
        logits = executor.run("decode", step_tokens, positions, [1, 1])["logits"]
        for b in range(2):
            error = relative_error(logits[b], references[b][positions[b]])
            assert error < bound, ("decode", step, b, error)
            worst = max(worst, error)
    return worst


def hf_greedy(model, prompt, new_tokens):
    """HF `generate`'s greedy tokens for one prompt (exactly `new_tokens`: EOS is not a stop), and
    each step's margin: the chosen token's logit minus the best other one, over the largest |logit|.

    A margin <= 0 means HF did not pick the raw argmax (min_new_tokens masks EOS), so a plan
    generating with no EOS ids would rightly differ there.
    """
    import torch
    ids = torch.tensor([prompt], device=next(model.parameters()).device)
    with torch.no_grad():
        output = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, pad_token_id=0, output_logits=True,
                                return_dict_in_generate=True)
    tokens = output.sequences[0, len(prompt):].tolist()
    margins = []
    for token, step_logits in zip(tokens, output.logits):
        row = step_logits[0].float()
        others = torch.cat([row[:token], row[token + 1:]])
        margins.append((row[token] - others.max()).item() / row.abs().max().item())
    return tokens, margins
