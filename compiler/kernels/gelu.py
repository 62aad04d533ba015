"""GELU (tanh approximation) of each element: templates/gelu.py.jinja."""

from compiler.kernels import common


def roles(constants):
    """x [T, N], out [T, N]."""
    return ("x", "out")


tiles = common.elementwise_tiles
grid = common.elementwise_grid
