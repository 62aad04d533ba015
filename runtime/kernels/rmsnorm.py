"""NumPy reference of templates/rmsnorm.py.jinja."""

from runtime.kernels.shared import rmsnorm_rows


def rmsnorm(constants, x, weight, out):
    """RMSNorm over each run of `group` columns."""
    out.write(rmsnorm_rows(x.read(), weight.read(), constants["eps"], constants["group"]))
