"""Kernel modules: what the compiler knows of each template, found by the template's name.

`compiler/kernels/<template>.py` sits beside `templates/<template>.py.jinja` (the cuTile source)
and `runtime/kernels/<template>.py` (its NumPy reference). It defines:

    roles(constants)                    operand names in the template's parameter order
    tiles(rules, sm, constants, shapes) constants specialization adds for `sm` (TileRules `rules`,
                                        `shapes`: {role: shape} of the launch's operands)
    grid(constants, shapes)             the (x, y, z) grid of the specialized kernel

Lowering names a launch's operands by role and `ordered` lays them out; specialization calls
`choose_tiles` and `launch_grid`. A new template is its .jinja, its module here and its NumPy
reference: nothing else looks templates up by name. `common.py` holds rules several share.
"""

import importlib
from functools import lru_cache

from compiler.errors import CompileError
from compiler.tiles import SHIPPED


@lru_cache(maxsize=None)
def kernel_module(template):
    """The module of `template` (compiler/kernels/<template>.py)."""
    if template.isidentifier() and template != "common":
        try:
            return importlib.import_module(f"compiler.kernels.{template}")
        except ModuleNotFoundError as exc:
            if exc.name != f"compiler.kernels.{template}":
                raise
    raise CompileError(f"no kernel module for template '{template}' (compiler/kernels/{template}.py)")


def roles(template, constants):
    """Operand names of a `template` launch with `constants`, in order."""
    return tuple(kernel_module(template).roles(constants))


def ordered(template, constants, named):
    """The operands of `named` ({role: operand}) in `template`'s order; every role must be given."""
    order = roles(template, constants)
    if set(order) != set(named):
        raise CompileError(f"template '{template}' takes operands {list(order)}, got {sorted(named)}")
    return [named[role] for role in order]


def shapes_by_role(template, constants, shapes):
    """{role: shape} of a launch: `shapes` as a list in operand order, or already by role."""
    if isinstance(shapes, dict):
        return {role: tuple(shape) for role, shape in shapes.items()}
    order = roles(template, constants)
    if len(order) != len(shapes):
        raise CompileError(f"template '{template}' takes {len(order)} operands {list(order)}, got {len(shapes)}")
    return {role: tuple(shape) for role, shape in zip(order, shapes)}


def choose_tiles(sm, template, constants, shapes, rules=SHIPPED):
    """Constants to add to a spec of `template` launched on `sm` with operand `shapes`."""
    return kernel_module(template).tiles(rules, sm, constants, shapes_by_role(template, constants, shapes))


def launch_grid(template, constants, shapes):
    """The (x, y, z) grid a specialized kernel (constants with tiles) expects for operand `shapes`."""
    return tuple(kernel_module(template).grid(constants, shapes_by_role(template, constants, shapes)))
