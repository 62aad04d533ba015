"""a + b: templates/add.py.jinja."""

from compiler.kernels import common


def roles(constants):
    """a [T, N], b [T, N], out [T, N]."""
    return ("a", "b", "out")


tiles = common.elementwise_tiles
grid = common.elementwise_grid
