"""Exception types whose messages are meant for users (one line, names the thing at fault)."""


class CgcError(Exception):
    """Base of every error cgc reports to a user; the CLI prints it without a traceback."""


class PlanError(CgcError):
    """A plan file is missing, of another version, truncated, corrupted or inconsistent."""


class InputError(CgcError):
    """A request to the runtime is invalid (prompt too long, empty, bad token id, ...)."""


class DeviceError(CgcError):
    """The GPU is missing, lacks the plan's target, or is out of memory."""


def exit_status(command, debug=False):
    """Run `command()` as a CLI command and return its exit status: 0; 2 with one `cgc: error:`
    line for a CgcError or an out-of-memory (raised instead with `debug`); 130 on Ctrl-C; 0 when
    the output pipe closes (piped into `head` and the like)."""
    import sys
    try:
        command()
    except CgcError as exc:
        if debug:
            raise
        print(f"cgc: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print("cgc: error: out of memory (the model, --max-batch or --max-seq may be too large for this machine)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0
