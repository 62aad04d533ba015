"""Exception types whose messages are meant for users (one line, names the thing at fault)."""


class CgcError(Exception):
    """Base of every error cgc reports to a user; the CLI prints it without a traceback."""


class PlanError(CgcError):
    """A plan file is missing, of another version, truncated, corrupted or inconsistent."""


class InputError(CgcError):
    """A request to the runtime is invalid (prompt too long, empty, bad token id, ...)."""


class DeviceError(CgcError):
    """The GPU is missing, lacks the plan's target, or is out of memory."""
