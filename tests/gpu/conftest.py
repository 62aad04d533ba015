"""Fixtures of the GPU tests."""

import pytest


@pytest.fixture(scope="module")
def hf_in_float32():
    """HF's reference multiplies in float32 (PyTorch's default; made explicit) while a module runs."""
    torch = pytest.importorskip("torch")
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved
