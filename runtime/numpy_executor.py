"""Runs a plan's programs on the CPU with NumPy: one reference per kernel template (runtime/kernels/).

The CPU fallback of `cgc run` and the semantic reference the compiler and GPU kernels are tested
against. Launch operands are bound to views once, at load time, then replayed.
"""

import numpy as np

from runtime.errors import PlanError
from runtime.kernels import View, reference
from runtime.plan import weights_image
from runtime.sampling import neutral_params


class NumpyExecutor:
    """Holds the plan's regions in host memory and runs its programs."""

    name = "numpy"

    def __init__(self, plan):
        self.plan = plan
        self.regions = {name: np.zeros(size, dtype=np.uint8) for name, size in plan["regions"].items()}
        image = np.frombuffer(weights_image(plan), dtype=np.uint8)
        self.regions["weights"][:image.size] = image
        self._programs = {name: self._bind(name, program) for name, program in plan["programs"].items()}
        if plan.get("generation"):
            self.write(plan["generation"]["params"], neutral_params(plan["limits"]["max_batch"]))

    def _bind(self, name, program):
        bound = []
        for launch in program["launches"]:
            spec = self.plan["kernels"][launch["kernel"]]
            kernel = reference(spec["template"])
            if kernel is None:
                raise PlanError(f"program '{name}': no NumPy kernel for template '{spec['template']}'")
            bound.append((kernel, spec["constants"], [View(self.regions, arg) for arg in launch["args"]]))
        inputs = {key: View(self.regions, operand) for key, operand in program["inputs"].items()}
        outputs = {key: View(self.regions, operand) for key, operand in program["outputs"].items()}
        return inputs, bound, outputs

    def close(self):
        """Nothing to release (the GPU executor's close frees its device memory)."""

    def reset(self):
        """Clear the KV cache (start of a new batch of sequences)."""
        self.regions["kv"][:] = 0

    def set_inputs(self, program, tokens, start_pos, seq_lens):
        """Write a program's inputs."""
        inputs, _, _ = self._programs[program]
        inputs["tokens"].write(np.asarray(tokens, dtype=np.int32))
        inputs["start_pos"].write(np.asarray(start_pos, dtype=np.int32))
        inputs["seq_lens"].write(np.asarray(seq_lens, dtype=np.int32))

    def launch(self, program):
        """Run one program on the inputs in place."""
        for index, (kernel, constants, views) in enumerate(self._programs[program][1]):
            try:
                kernel(constants, *views)
            except (ValueError, IndexError, KeyError, TypeError) as exc:  # operands that break the template contract
                op = self.plan["programs"][program]["launches"][index]["op"]
                raise PlanError(f"{self.plan.get('path', 'plan')}: program '{program}' launch {index} ({op}): "
                                f"operands do not fit the kernel ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None

    def write(self, operand, values):
        """Store `values` into a plan operand (generation state)."""
        View(self.regions, operand).write(np.asarray(values))

    def fetch(self, operands):
        """Copies of the operands' current values, behind the same `wait()` as the GPU's."""
        return _Fetched([View(self.regions, operand).array.copy() for operand in operands])

    def run(self, program, tokens, start_pos, seq_lens):
        """Run one program on [B, S] tokens; returns {output name: float32 array}."""
        self.set_inputs(program, tokens, start_pos, seq_lens)
        self.launch(program)
        return {name: view.read().copy() for name, view in self._programs[program][2].items()}


class _Fetched:
    def __init__(self, arrays):
        self.arrays = arrays

    def wait(self):
        """The fetched arrays."""
        return self.arrays
