"""NumPy reference of templates/layernorm.py.jinja."""

from runtime.kernels.shared import layernorm_rows


def layernorm(constants, x, weight, bias, out):
    """LayerNorm over each row."""
    out.write(layernorm_rows(x.read(), weight.read(), bias.read(), constants["eps"]))
