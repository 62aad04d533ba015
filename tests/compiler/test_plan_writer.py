"""Writing plans destroys nothing: -o refuses non-regular files, a plan and its external weights
are committed as one unit, interrupted compiles leave no temp files, modes follow the umask."""

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from compiler.compile import CompileOptions, compile_plan
from compiler.errors import CompileError
from runtime.plan import load_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _options(**kwargs):
    return CompileOptions(preset="tiny", max_seq=16, prefill_buckets=(4,), **kwargs)


def test_output_must_be_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for target in (tmp_path / "fifo", tmp_path / "dir", "/dev/null"):
        with pytest.raises(CompileError, match="exists and is a (FIFO|directory|device)"):
            compile_plan("llama", str(target), _options())
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["dir", "fifo"] and os.listdir(tmp_path / "dir") == []


def test_external_weights_committed_with_their_plan(tmp_path, monkeypatch):
    path = str(tmp_path / "m.plan")
    compile_plan("llama", path, _options(weights_storage="external", seed=1))
    first = load_plan(path)["weights"]["file"]
    compile_plan("llama", path, _options(weights_storage="external", seed=2))
    second = load_plan(path)["weights"]["file"]
    assert first != second and sorted(os.listdir(tmp_path)) == sorted(["m.plan", second])

    import compiler.plan_writer as writer

    def broken_encode(body):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(writer, "encode_plan", broken_encode)
    with pytest.raises(CompileError, match="No space left on device"):
        compile_plan("llama", path, _options(weights_storage="external", seed=3))
    assert sorted(os.listdir(tmp_path)) == sorted(["m.plan", second])  # old plan and its weights intact
    from runtime.numpy_executor import NumpyExecutor
    NumpyExecutor(load_plan(path))  # the sha256 still matches


def test_stale_temp_files_removed_by_the_next_compile(tmp_path):
    dead = tmp_path / ".cgc-999999999-abc.part"
    live = tmp_path / f".cgc-{os.getppid()}-abc.part"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    compile_plan("llama", str(tmp_path / "m.plan"), _options())
    assert not dead.exists() and live.exists()


SLOW_WRITE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a shell, whatever the test runner ignores
os.umask(0o027)
import compiler.plan_writer as writer
from compiler.cli import main
real = writer.write_safetensors
def slow(stream, specs, arrays):
    stream.write(b"partial")
    print("WRITING", flush=True)
    time.sleep(60)
writer.write_safetensors = slow if sys.argv[2] == "slow" else real
sys.exit(main(["compile", "llama", "--preset", "tiny", "--sm", "none", "--max-seq", "16", "--prefill-buckets", "4",
               "--weights-storage", "external", "-o", sys.argv[1]]))
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_remove_temp_files(tmp_path, signum, code):
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SLOW_WRITE), str(tmp_path / "m.plan"), "slow"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": ROOT})
    assert process.stdout.readline().strip() == "WRITING"
    assert any(name.endswith(".part") for name in os.listdir(tmp_path))
    process.send_signal(signum)
    assert process.wait(timeout=30) == code
    assert os.listdir(tmp_path) == []


def test_files_follow_the_umask(tmp_path):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SLOW_WRITE), str(tmp_path / "m.plan"), "fast"],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in os.listdir(tmp_path)}
    assert len(modes) == 2 and set(modes.values()) == {0o640}, modes
