"""cgc runtime: loads a compiled plan and runs it (CuPy on a GPU, NumPy on a CPU).

Depends on numpy, msgpack and safetensors only (cupy when a GPU is used); it never imports the
compiler, cuda.tile, yaml or jinja2, so an application can embed it on its own.
"""

from runtime.errors import CgcError, InputError, PlanError
from runtime.plan import PLAN_FORMAT, PLAN_VERSION, load_plan

__all__ = ["CgcError", "InputError", "PlanError", "PLAN_FORMAT", "PLAN_VERSION", "load_plan"]
