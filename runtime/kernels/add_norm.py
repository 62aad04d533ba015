"""NumPy reference of templates/add_norm.py.jinja."""

from runtime.kernels.shared import layernorm_rows, rmsnorm_rows


def add_norm(constants, a, b, weight, *rest):
    """sum = a + b (rounded to storage), norm_out = norm(sum)."""
    sum_out, norm_out = rest[-2], rest[-1]
    sum_out.write(a.read() + b.read())
    total = sum_out.read()
    if constants["norm"] == "layernorm":
        norm_out.write(layernorm_rows(total, weight.read(), rest[0].read(), constants["eps"]))
    else:
        norm_out.write(rmsnorm_rows(total, weight.read(), constants["eps"], total.shape[1]))
