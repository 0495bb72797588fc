"""Hostile conditions for `analyze`: unwritable or full output disks, --out equal to the input folder,
stale .part folders, two runs into one --out, Ctrl-C with workers, umask-respecting modes."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_bavis import cli, outputs, pipeline
from napari_bavis.cohort import results as cohort_results

from test_cli import results_rows, run_cli, stderr_lines_naming


def _copy_scans(good_scans, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for scan in good_scans:
        shutil.copy(scan, folder / scan.name)
        out.append(folder / scan.name)
    return out


@pytest.fixture
def no_analysis(monkeypatch):
    """Records every analysis started (none should be, where --out is refused up front)."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a scan was analysed")

    monkeypatch.setattr(pipeline, "analyze", fake)
    return calls


def test_out_that_cannot_be_created_is_refused_before_any_scan(tmp_path, good_scans, tiny_model, no_analysis):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, stderr = run_cli(["analyze", *good_scans, "--out", blocker / "out", "--model", tiny_model, "--quiet"])
    assert code == 2 and no_analysis == []
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "cannot write there" in stderr


def test_read_only_out_is_refused_before_any_scan(tmp_path, good_scans, tiny_model, no_analysis, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: the disk says EROFS instead
        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(outputs.tempfile, "mkstemp", read_only)
    else:
        out.chmod(0o555)
    try:
        code, _, stderr = run_cli(["analyze", *good_scans, "--out", out, "--model", tiny_model, "--quiet"])
    finally:
        out.chmod(0o755)
    assert code == 2 and no_analysis == []
    (line,) = stderr.strip().splitlines()
    assert "cannot write there" in line and ("read-only" in line or "permission denied" in line)


def test_full_disk_is_one_line_and_stops_the_run(tmp_path, good_scans, tiny_model, monkeypatch):
    exported = []

    def full(analysis, out_dir, **kwargs):
        exported.append(out_dir)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "export_analysis", full)
    code, _, stderr = run_cli(["analyze", *good_scans, "--out", tmp_path / "o", "--model", tiny_model,
                               "--sex", "F", "--quiet"])
    assert code == 1 and "Traceback" not in stderr and "internal error" not in stderr
    assert len(exported) == 1  # the second scan is not analysed for nothing
    (line,) = stderr_lines_naming(stderr, good_scans[0])
    assert line.endswith("no space left on device")
    assert "stopped: no space left on device" in stderr


def test_full_disk_on_the_results_table_is_one_line(tmp_path, good_scans, tiny_model, monkeypatch):
    monkeypatch.setattr(pipeline, "analyze", lambda *a, **k: (_ for _ in ()).throw(ValueError("skip")))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "results.csv"))

    monkeypatch.setattr(cohort_results, "write_results", full)
    code, _, stderr = run_cli(["analyze", good_scans[0], "--out", tmp_path / "o", "--model", tiny_model,
                               "--sex", "F", "--quiet"])
    assert code == 1 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"napari-bavis: {tmp_path / 'o' / 'results.csv'}: no space left on device"


def test_out_equal_to_the_input_folder_works_and_resumes(tmp_path, good_scans, tiny_model):
    folder = tmp_path / "cohort"
    scans = _copy_scans(good_scans[:1], folder)
    old = os.umask(0o022)
    try:
        code, stdout, stderr = run_cli(["analyze", folder, "--out", folder, "--model", tiny_model, "--sex", "F", "--quiet"])
    finally:
        os.umask(old)
    assert code == 0, stderr
    result = folder / "sub-01_T1w"
    assert (result / "report.json").is_file() and str(scans[0]) in stdout
    # shareable on a cohort folder: the umask's modes, not mkdtemp/mkstemp's 0700/0600
    assert stat.S_IMODE(result.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in result.iterdir()} == {0o644}
    assert stat.S_IMODE((folder / "results.csv").stat().st_mode) == 0o644
    # a second run finds the same single scan (not its maps) and skips it
    code, _, stderr = run_cli(["analyze", folder, "--out", folder, "--model", tiny_model, "--sex", "F", "--quiet"])
    assert code == 0 and "0 done, 0 failed, 1 skipped" in stderr
    assert set(results_rows(folder)) == {"sub-01_T1w"}


def test_stale_part_folders_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "o"
    stale = out / ".sub-01.abcd1234.part"
    other = out / ".sub-01.foo.abcd1234.part"  # another scan's (named sub-01.foo)
    fresh = out / ".sub-01.efgh5678.part"
    for folder in (stale, other, fresh):
        folder.mkdir(parents=True)
        (folder / "map.nii.gz").write_bytes(b"x")
    past = time.time() - 3600
    os.utime(stale, (past, past))
    os.utime(other, (past, past))
    assert outputs.clean_stale_parts(out, "sub-01", before=time.time() - 60) == 1
    assert not stale.exists() and other.exists() and fresh.exists()


def test_a_scan_claimed_by_another_run_is_left_to_it(tmp_path, good_scans, tiny_model):
    out = tmp_path / "o"
    out.mkdir()
    stale = out / ".sub-02_T1w.abcd1234.part"
    stale.mkdir()
    os.utime(stale, (time.time() - 3600,) * 2)
    with outputs.claim(out, "sub-01_T1w") as mine:  # "another run" is analysing sub-01
        assert mine
        with outputs.claim(out, "sub-01_T1w") as theirs:
            assert not theirs
        code, _, stderr = run_cli(["analyze", *good_scans, "--out", out, "--model", tiny_model, "--sex", "F", "--quiet"])
    assert code == 0, stderr
    assert "1 done, 0 failed, 0 skipped, 1 left to another run" in stderr
    assert not (out / "sub-01_T1w").exists() and (out / "sub-02_T1w" / "report.json").is_file()
    assert set(results_rows(out)) == {"sub-02_T1w"}  # the other run writes sub-01's row
    assert not stale.exists()  # the killed run's leftovers went once the claim was ours


def test_ctrl_c_with_two_workers_ends_promptly_with_nothing_half_written(tmp_path, good_scans, tiny_model):
    scans = _copy_scans(good_scans, tmp_path / "in")
    for i in range(2):  # four scans: two running, two queued when Ctrl-C comes
        for scan in list(scans[:2]):
            copy = scan.with_name(f"extra{i}-{scan.name}")
            shutil.copy(scan, copy)
    out = tmp_path / "o"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "napari_bavis.cli", "analyze", str(tmp_path / "in"), "--out", str(out),
                             "--model", str(tiny_model), "--sex", "F", "--workers", "2", "--device", "cpu", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.name.endswith(".part") for p in out.glob(".*")):
        time.sleep(0.1)  # until a worker has started writing (or analysing) a scan
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to the parent only, as `kill -INT` does
    try:
        _, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Ctrl-C did not end the run within 20 s")
    elapsed = time.monotonic() - sent
    print(f"Ctrl-C to exit: {elapsed:.1f} s")
    assert elapsed < 10
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    for folder in out.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            assert cli.finished_report(folder) is not None, folder  # nothing half-written in view


def test_hostile_corpus_gives_one_line_each_quickly(tmp_path, tiny_model):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
    from hostile_scans import write_hostile_scans

    cases = write_hostile_scans(tmp_path / "in")
    start = time.perf_counter()
    code, stdout, stderr = run_cli(["analyze", tmp_path / "in", "--out", tmp_path / "o", "--model", tiny_model,
                                    "--sex", "F", "--quiet"])
    assert time.perf_counter() - start < 120
    assert code == 1 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("napari-bavis: ") and "done" in lines[-1]
    for key, (path, words) in cases.items():
        named = stderr_lines_naming(stderr, path)
        ok = [line for line in stdout.splitlines() if str(path) in line]
        assert len(named) + len(ok) == 1, (key, named, ok)
        if words is not None:
            assert words in named[0], (key, named)
    assert "no positive intensities" in stderr_lines_naming(stderr, cases["negative-only"][0])[0]
    assert len(lines) == 1 + sum(1 for key in cases if stderr_lines_naming(stderr, cases[key][0]))


def test_models_prints_names_with_newlines_and_ansi_escapes_sanitised(tmp_path, monkeypatch):
    from cli_builders import tiny_checkpoint

    evil = tiny_checkpoint(tmp_path / "evil.pt", name="evil\nname\x1b[31mred\x1b[0m")
    code, stdout, _ = run_cli(["models", evil])
    assert code == 0 and "\x1b" not in stdout
    assert "evil name?[31mred?[0m" in stdout  # the newline became a space, the escapes ?
    monkeypatch.setattr(pipeline, "bundled_models", lambda: {"demo": evil})
    code, stdout, _ = run_cli(["models"])
    assert code == 0 and "\x1b" not in stdout and len(stdout.strip().splitlines()) == 2


def test_a_crafted_checkpoint_is_one_line_for_models_and_analyze(tmp_path, good_scans):
    import torch

    from cli_builders import tiny_checkpoint

    bad = tiny_checkpoint(tmp_path / "neg.pt")
    payload = torch.load(bad, weights_only=True)
    payload["card"]["architecture_kwargs"]["channels"] = [-2, 4, 4]
    torch.save(payload, bad)
    code, _, stderr = run_cli(["models", bad])
    assert code == 1 and "Traceback" not in stderr and "architecture_kwargs" in stderr
    assert len(stderr.strip().splitlines()) == 1
    code, _, stderr = run_cli(["analyze", good_scans[0], "--out", tmp_path / "o", "--model", bad, "--quiet"])
    assert code == 2 and "Traceback" not in stderr and "architecture_kwargs" in stderr


@pytest.mark.parametrize("command", ["compare", "demo"])
def test_compare_and_demo_refuse_an_unwritable_out_in_one_line(tmp_path, good_scans, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = ["compare", *good_scans] if command == "compare" else ["demo"]
    code, _, stderr = run_cli([*argv, "--out", blocker / "out", "--quiet"])
    assert code == 2 and "cannot write there" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_two_concurrent_runs_into_one_out_analyse_each_scan_once(tmp_path, good_scans, tiny_model):
    scans = _copy_scans(good_scans, tmp_path / "in")
    for scan in list(scans):
        shutil.copy(scan, scan.with_name(f"again-{scan.name}"))
    out = tmp_path / "o"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "napari_bavis.cli", "analyze", str(tmp_path / "in"), "--out", str(out),
               "--model", str(tiny_model), "--sex", "F", "--device", "cpu", "--quiet"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    done = [int(err.strip().splitlines()[-1].split("napari-bavis: ")[1].split(" done")[0]) for _, err in results]
    assert sum(done) == 4  # each of the 4 scans analysed by exactly one of the runs
    assert {row["status"] for row in results_rows(out).values()} <= {"done", "skipped"} and len(results_rows(out)) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
