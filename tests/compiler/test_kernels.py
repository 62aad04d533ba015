"""Every kernel template is three files found by its name: templates/<t>.py.jinja,
compiler/kernels/<t>.py and runtime/kernels/<t>.py; lowering lays operands out by role."""

import inspect
import os

import pytest

from compiler import kernels
from compiler.cutile_export import templates_dir
from compiler.errors import CompileError
from runtime.errors import PlanError
from runtime.kernels import reference
from runtime.numpy_executor import NumpyExecutor

TEMPLATES = sorted(name[:-len(".py.jinja")] for name in os.listdir(templates_dir()) if name.endswith(".py.jinja"))


def test_the_shipped_templates_are_found():
    assert {"matmul", "attention", "attention_merge", "sample", "embed"} <= set(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_has_a_kernel_module_and_a_numpy_reference(template):
    module = kernels.kernel_module(template)
    for name in ("roles", "tiles", "grid"):
        assert callable(getattr(module, name)), f"compiler/kernels/{template}.py lacks {name}"
    function = reference(template)
    assert callable(function) and function.__name__ == template
    assert list(inspect.signature(function).parameters)[0] == "constants"


def test_helper_modules_are_not_templates():
    assert reference("shared") is None and reference("conv") is None and reference("../x") is None
    with pytest.raises(CompileError, match="no kernel module for template 'common'"):
        kernels.kernel_module("common")


def test_the_numpy_executor_names_a_template_without_a_reference():
    plan = {"regions": {"weights": 0}, "weights": {"storage": "embedded", "blob": b""},
            "kernels": [{"template": "conv", "constants": {}}],
            "programs": {"decode": {"launches": [{"kernel": 0, "args": []}], "inputs": {}, "outputs": {}}}}
    with pytest.raises(PlanError, match="program 'decode': no NumPy kernel for template 'conv'"):
        NumpyExecutor(plan)
