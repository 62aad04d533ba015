"""NumPy reference of templates/gelu.py.jinja."""

from runtime.kernels.shared import gelu_tanh


def gelu(constants, x, out):
    """GELU, tanh approximation."""
    out.write(gelu_tanh(x.read()))
