"""silu(gate) * up: templates/silu_mul.py.jinja."""

from compiler.kernels import common


def roles(constants):
    """gate [T, N], up [T, N], out [T, N]."""
    return ("gate", "up", "out")


tiles = common.elementwise_tiles
grid = common.elementwise_grid
