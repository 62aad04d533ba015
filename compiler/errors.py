"""Compiler error types; each message names the file, line and op or tensor at fault."""

from runtime.errors import CgcError


class GraphError(CgcError):
    """A graph YAML is malformed, names an unknown op or symbol, or has inconsistent shapes."""


class CheckpointError(CgcError):
    """A checkpoint directory lacks a tensor, or holds one of the wrong shape or dtype."""


class CompileError(CgcError):
    """Kernel specialization or plan writing failed."""
