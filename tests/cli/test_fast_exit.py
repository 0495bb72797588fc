"""The ``napari-bavis`` command ends with ``os._exit`` after ``main`` (cli.run): what it prints must
still all arrive through a pipe, its exit codes must be main's, and atexit handlers must still run."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import atexit, sys
from napari_bavis import cli
atexit.register(lambda: print("atexit handler ran", flush=True))
sys.argv = ["napari-bavis", *sys.argv[1:]]
cli.run()
"""


def _run(*args):
    return subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True, timeout=120)


def test_output_through_a_pipe_is_complete_and_atexit_runs():
    done = _run("models")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "architecture"]
    assert any(line.startswith("ds002748 ") for line in lines)  # the table's rows, not cut off by the exit
    assert lines[-1] == "atexit handler ran"


def test_usage_error_keeps_exit_code_2_and_its_line():
    done = _run("analyze", "--no-such-flag")
    assert done.returncode == 2
    assert "error:" in done.stderr and "Traceback" not in done.stderr
    assert "atexit handler ran" in done.stdout


def test_module_entry_point_exits_with_mains_code(tmp_path):
    missing = tmp_path / "missing.nii.gz"
    done = subprocess.run([sys.executable, "-m", "napari_bavis.cli", "analyze", str(missing), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode not in (0, None)
    assert "missing.nii.gz" in done.stderr and "Traceback" not in done.stderr


def test_a_bug_still_shows_its_traceback_and_exits_1(tmp_path):
    code = CODE.replace("cli.run()", "cli.main = lambda: 1 / 0\ncli.run()")
    done = subprocess.run([sys.executable, "-c", code, "models"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr
    assert "atexit handler ran" in done.stdout
