"""Write a plan and its external weights file so that nothing is lost or destroyed.

- The output must be a regular file or not exist: a device, FIFO or directory named by `-o` is
  refused, never replaced.
- Each file is written to a temp file beside it (`.cgc-<pid>-*.part`) and renamed into place, so
  a failed compile leaves the previous plan as it was. SIGTERM and SIGINT unwind through the
  same cleanup; temp files of a compile that was killed harder are removed by the next compile
  into that folder (their process is gone).
- External weights are named after their content (`<plan stem>.<sha256[:16]>.weights.safetensors`),
  so a plan is never paired with another compile's weights: the new weights land under a new
  name, then the plan is renamed over the old one (the commit point), and only then is the old
  plan's weights file removed.
- Files get the usual mode (0666 less the umask), like any file the user creates.
"""

import glob
import hashlib
import os
import re
import stat
import tempfile

from compiler.errors import CompileError
from runtime.plan import encode_plan
from runtime.safetensors_file import SafetensorsFile, SafetensorsFormatError, write_safetensors

_TEMP_PREFIX = ".cgc-"
_TEMP = re.compile(r"\.cgc-(\d+)-[^/]*\.part")


def check_output(path):
    """Raise CompileError unless `path` is absent or a regular file (checked before compiling
    and again before renaming)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise CompileError(f"{path}: is a dangling symbolic link; refusing to write through it") from None
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise CompileError(f"{path}: {parent} is not a directory") from None
        return
    except OSError as exc:
        raise CompileError(f"{path}: cannot check the output path: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise CompileError(f"{path}: exists and is {kind}; the output must be a regular file or a new path")


def remove_stale_temps(directory):
    """Remove temp files that compiles which no longer run left in `directory`."""
    for path in glob.glob(os.path.join(glob.escape(directory), _TEMP_PREFIX + "*.part")):
        match = _TEMP.fullmatch(os.path.basename(path))
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            os.unlink(path)
        except OSError:
            pass


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_temp(directory, write):
    """Write a temp file in `directory` with `write(stream)`; returns its path (caller renames it)."""
    handle, temp_path = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-", suffix=".part", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_path, _umask_mode())
    except BaseException:
        _unlink(temp_path)
        raise
    return temp_path


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _sync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Hashing:
    def __init__(self, stream, digest):
        self.stream, self.digest = stream, digest

    def write(self, data):
        self.digest.update(data)
        self.stream.write(data)


def write_external_weights(output_path, specs, arrays):
    """Write tensors (see write_safetensors) beside the plan at `output_path`, checked by the
    safetensors library; returns (file name, sha256). The file is named after its content."""
    directory = os.path.dirname(os.path.abspath(output_path))
    stem = os.path.splitext(os.path.basename(output_path))[0]
    digest = hashlib.sha256()
    try:
        os.makedirs(directory, exist_ok=True)
        temp_path = _write_temp(directory, lambda stream: write_safetensors(_Hashing(stream, digest), specs, arrays))
    except OSError as exc:
        raise CompileError(f"{output_path}: cannot write the weights file: {exc.strerror}") from None
    try:
        SafetensorsFile(temp_path).keys()
        name = f"{_plain_stem(stem)}.{digest.hexdigest()[:16]}.weights.safetensors"
        final = os.path.join(directory, name)
        check_output(final)
        os.replace(temp_path, final)
    except SafetensorsFormatError as exc:
        _unlink(temp_path)
        raise CompileError(f"{output_path}: the weights file written is not valid safetensors: {exc}") from None
    except BaseException:
        _unlink(temp_path)
        raise
    return name, digest.hexdigest()


def _plain_stem(stem):
    """The plan's stem in the characters a weights file name may have (runtime/plan_schema.py)."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "plan")[:200]


def discard_weights(output_path, weights):
    """Remove the external weights file a failed compile wrote, unless the plan at `output_path`
    uses that same file (same content, same name)."""
    name = weights.get("file") if weights and weights.get("storage") == "external" else None
    if name is not None and name != _previous_weights_file(output_path):
        _unlink(os.path.join(os.path.dirname(os.path.abspath(output_path)), name))


def write_plan(body, path):
    """Encode `body` and commit it to `path`; returns the file size. If the plan it replaces had
    an external weights file other than this one's, that file is removed after the commit."""
    previous = _previous_weights_file(path)
    temp_path = None
    try:
        data = encode_plan(body)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        temp_path = _write_temp(directory, lambda stream: stream.write(data))
        check_output(path)
        os.replace(temp_path, path)
        temp_path = None
        _sync_directory(directory)
    except OSError as exc:
        raise CompileError(f"{path}: cannot write plan: {exc.strerror}") from None
    finally:
        if temp_path is not None:
            _unlink(temp_path)
    ours = body["weights"].get("file")
    if previous is not None and previous != ours:
        _unlink(os.path.join(os.path.dirname(os.path.abspath(path)), previous))
    return len(data)


def _previous_weights_file(path):
    """The external weights file name of the plan now at `path`, if it is a readable cgc plan
    with one (embedded plans are not read: only their size would be)."""
    from runtime.errors import PlanError
    from runtime.plan import load_plan
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > (64 << 20):
            return None
        weights = load_plan(path)["weights"]
    except (PlanError, OSError):
        return None
    return weights.get("file") if weights["storage"] == "external" else None
