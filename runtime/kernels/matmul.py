"""NumPy reference of templates/matmul.py.jinja."""

import numpy as np

from runtime.kernels.shared import gelu_tanh, norm_rstd, row_stats, silu
from runtime.plan_layout import ARGMAX_GROUP, STATS_GROUP, argmax_width
from runtime.quant import dequantize


def group_argmax(rows):
    """Per row and ARGMAX_GROUP-column group of `rows` [T, N]: the largest value and the first
    column holding it ([T, G] float32 and int64), as the greedy sampler reads them."""
    rows = np.asarray(rows, dtype=np.float32)
    groups = argmax_width(rows.shape[1])
    padded = np.full((rows.shape[0], groups * ARGMAX_GROUP), -np.inf, dtype=np.float32)
    padded[:, :rows.shape[1]] = rows
    padded = padded.reshape(rows.shape[0], groups, ARGMAX_GROUP)
    return padded.max(axis=2), padded.argmax(axis=2) + np.arange(groups) * ARGMAX_GROUP


def _weight(constants, operands):
    """The next weight operand as float32 (a quantized one dequantized from its codes and scales)."""
    mode = constants.get("weight_quant")
    if mode is None:
        return operands.pop(0).read()
    codes, scale = operands.pop(0).array, operands.pop(0).read()
    minimum = operands.pop(0).read() if mode == "int4" else None
    return dequantize(mode, constants.get("weight_layout", "in_out"), codes, scale, minimum, constants.get("quant_group"))


def matmul(constants, x, *rest):
    """out = epilogue(prologue(x) @ weight), steps in order (see templates/README.md); row_skip
    passes seq_lens after x, a prologue reads `stats` next, row_stats writes the output's statistics after out."""
    operands = list(rest)
    if constants.get("row_skip"):  # the GPU's skipped row tiles are rows past seq_lens: undefined
        operands.pop(0)
    argmax = (operands.pop(-2), operands.pop()) if constants.get("row_argmax") else None
    stats_out = operands.pop() if constants.get("row_stats") else None
    out = operands.pop()
    rows = x.read()
    scale = None
    if constants.get("prologue"):  # a norm folded into the weights: scale rows by 1/sqrt(var + eps)
        scale = norm_rstd(operands.pop(0).read(), rows.shape[1], constants["prologue"], constants["eps"])
    flip = (lambda w: w.T) if constants.get("weight_layout") == "out_in" else (lambda w: w)  # [N, K] weights
    acc = rows @ flip(_weight(constants, operands))
    if "silu_mul" in constants["epilogue"]:
        up = rows @ flip(_weight(constants, operands))
    if scale is not None:
        acc = acc * scale
        if "silu_mul" in constants["epilogue"]:
            up = up * scale
    for step in constants["epilogue"]:
        if step == "bias":
            acc = acc + operands.pop(0).read()
        elif step == "gelu":
            acc = gelu_tanh(acc)
        elif step == "silu_mul":
            acc = silu(acc) * up
        elif step == "residual":
            acc = acc + operands.pop(0).read()
    out.write(acc)
    if stats_out is not None:
        stats_out.write(row_stats(out.read(), constants["row_stats"], constants.get("stats_group", STATS_GROUP)))
    if argmax is not None:  # of the stored (rounded) values, for the greedy sampler
        for view, values in zip(argmax, group_argmax(out.read())):
            view.write(values)
