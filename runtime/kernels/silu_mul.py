"""NumPy reference of templates/silu_mul.py.jinja."""

from runtime.kernels.shared import silu


def silu_mul(constants, gate, up, out):
    """silu(gate) * up."""
    out.write(silu(gate.read()) * up.read())
