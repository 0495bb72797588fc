"""napari-bavis on generated scans: outputs in each scan's own space, one stderr line per bad file,
exit codes, resume / --force, shards, covariates, models listing, demo, compare, the console script."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bad_scans import write_bad_scans

from napari_bavis import cli, pipeline
from napari_bavis.pipeline import DEFAULT_METHODS


def run_cli(argv) -> tuple[int, str, str]:
    """main(argv) in-process: (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def stderr_lines_naming(stderr: str, path: Path) -> list[str]:
    return [line for line in stderr.splitlines() if str(path) in line]


def results_rows(out: Path, name="results.csv") -> dict[str, dict]:
    with open(out / name, newline="") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, good_scans, tiny_model):
    """One call over a folder of good scans and a folder of bad files, two workers, covariates by
    file name for one scan and by scan name for the other; the output folder lies inside the input
    folder (allowed: nothing collides)."""
    root = tmp_path_factory.mktemp("cohort")
    inputs = root / "inputs"
    good = []
    for scan in good_scans:
        target = inputs / "good" / scan.parent.name / scan.name
        target.parent.mkdir(parents=True)
        shutil.copy(scan, target)
        good.append(target)
    bad = write_bad_scans(inputs / "bad", good[0])
    covariates = root / "covariates.csv"
    covariates.write_text(f"file,age,sex\n{good[0].name},70,F\n{good[1].name.replace('.nii.gz', '')},55,m\n")
    out = inputs / "results"
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    code, stdout, stderr = run_cli(["analyze", inputs, "--out", out, "--model", tiny_model, "--covariates",
                                    covariates, "--workers", 2, "--device", "cpu", "--quiet"])
    return {"code": code, "stdout": stdout, "stderr": stderr, "out": out, "good": good, "bad": bad,
            "inputs": inputs, "before": before, "model": tiny_model}


def test_good_scans_get_every_map_in_their_own_grid_and_affine(cohort):
    for scan in cohort["good"]:
        folder = cohort["out"] / scan.name.replace(".nii.gz", "")
        source = nib.load(scan)
        report = json.loads((folder / "report.json").read_text())
        assert set(report["maps"]) == set(DEFAULT_METHODS)
        for method, file in report["maps"].items():
            img = nib.load(folder / file)
            assert img.shape == source.shape
            np.testing.assert_array_equal(img.affine, source.affine)
            data = np.asarray(img.dataobj)
            assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 1
        assert (folder / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_has_the_promised_keys_and_the_covariates(cohort):
    expected = {"sub-01_T1w": (70.0, "F"), "sub-02_T1w": (55.0, "M")}
    rows = results_rows(cohort["out"])
    for name, (age, sex) in expected.items():
        report = json.loads((cohort["out"] / name / "report.json").read_text())
        for key in cli.REPORT_KEYS:
            assert key in report, key
        assert report["chronological_age"] == age
        assert report["brain_age_gap"] == pytest.approx(report["brain_age"] - age)
        assert "tiny" in report["model_card_summary"] and report["model"]["name"] == "tiny"
        assert report["versions"]["napari-bavis"] and report["preprocessing"]
        assert rows[name]["status"] == "done"
        assert float(rows[name]["chronological_age"]) == age and rows[name]["sex"] == sex
        assert float(rows[name]["brain_age"]) == pytest.approx(report["brain_age"], abs=0.01)


def test_each_bad_file_gets_exactly_one_stderr_line_and_no_folder(cohort):
    stderr, out = cohort["stderr"], cohort["out"]
    assert cohort["code"] == 1
    assert "Traceback" not in stderr
    rows = results_rows(out)
    for kind, path in cohort["bad"].items():
        lines = stderr_lines_naming(stderr, path)
        assert len(lines) == 1, (kind, stderr)
        assert lines[0].startswith(f"{path}: ") and len(lines[0]) > len(str(path)) + 5
        name = path.name.replace(".nii.gz", "")
        assert not (out / name).exists(), kind
        assert rows[name]["status"] == "failed" and rows[name]["error"] == lines[0]
    reasons = {kind: stderr_lines_naming(stderr, p)[0] for kind, p in cohort["bad"].items()}
    assert "truncated or corrupt" in reasons["truncated"] or "not a readable" in reasons["truncated"]
    assert "not a readable" in reasons["text"]
    assert "2D" in reasons["2d"] and "3 volumes" in reasons["4d"]
    assert "NaN" in reasons["nan"] and "empty" in reasons["empty"]
    for scan in cohort["good"]:
        assert stderr_lines_naming(stderr, scan) == []
    assert "2 done, 6 failed, 0 skipped" in stderr


def test_inputs_are_untouched_and_no_temporary_folders_remain(cohort):
    for path, payload in cohort["before"].items():
        assert path.read_bytes() == payload
    assert not [p for p in cohort["out"].iterdir() if p.name.startswith(".")]


def test_resume_skips_finished_scans_and_force_redoes_one(cohort, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(cohort["out"], out)
    reports = {s: out / s.name.replace(".nii.gz", "") / "report.json" for s in cohort["good"]}
    stamps = {s: r.stat().st_mtime_ns for s, r in reports.items()}
    args = ["analyze", cohort["inputs"] / "good", "--out", out, "--model", cohort["model"], "--sex", "F", "--quiet"]
    from napari_bavis.cli import analyze

    read = []  # each finished result's report is read once on a resume
    monkeypatch.setattr(analyze, "finished_report", lambda d, real=analyze.finished_report: read.append(d) or real(d))
    code, _, stderr = run_cli(args)
    assert code == 0, stderr
    assert "0 done, 0 failed, 2 skipped" in stderr
    assert sorted(read) == sorted(set(read)) and len(read) == 2
    assert all(r.stat().st_mtime_ns == stamps[s] for s, r in reports.items())

    first = cohort["good"][0]
    code, _, stderr = run_cli(args[:1] + [first] + args[2:] + ["--force"])
    assert code == 0 and "1 done, 0 failed, 0 skipped" in stderr
    assert reports[first].stat().st_mtime_ns != stamps[first]
    rows = results_rows(out)  # the earlier rows survive the partial re-run
    assert {"sub-01_T1w", "sub-02_T1w", "truncated"} <= set(rows)
    assert rows["sub-01_T1w"]["status"] == "done" and rows["sub-01_T1w"]["sex"] == "F"


def test_a_result_missing_a_listed_map_does_not_count_as_finished(cohort, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(cohort["out"], out)
    first = cohort["good"][0]
    folder = out / first.name.replace(".nii.gz", "")
    next(folder.glob("map_*.nii.gz")).unlink()  # a map listed in the report is missing
    assert cli.finished_report(folder) is None
    assert cli.finished_report(out / "sub-02_T1w") is not None


def test_shards_split_the_sorted_list_disjointly(tmp_path, good_scans, tiny_model):
    parts = [cli.shard_indices(7, (i, 3)) for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == list(range(7))
    bad = write_bad_scans(tmp_path / "bad", good_scans[0])
    ordered = sorted(bad.values(), key=lambda p: str(p.resolve()))
    code, _, stderr = run_cli(["analyze", tmp_path / "bad", "--out", tmp_path / "out", "--model", tiny_model,
                               "--shard", "2/2", "--quiet", "--device", "cpu"])
    assert code == 1
    for position, path in enumerate(ordered):
        assert len(stderr_lines_naming(stderr, path)) == (1 if position % 2 == 1 else 0)
    assert set(results_rows(tmp_path / "out", "results.shard-2-of-2.csv")) == {
        p.name.replace(".nii.gz", "") for p in ordered[1::2]}


def test_same_scan_name_in_two_folders_gets_two_stable_folders(tmp_path):
    a, b, c = tmp_path / "a" / "T1.nii.gz", tmp_path / "b" / "T1.nii.gz", tmp_path / "b" / "T2.nii"
    names = cli.output_names([a, b, c])
    assert len(set(names)) == 3 and names[2] == "T2" and all(n.startswith("T1-") for n in names[:2])
    assert cli.output_names([a, b, c]) == names


def test_find_scans_searches_folders_and_skips_the_output_folder(tmp_path):
    for rel in ("x/s1.nii.gz", "x/deep/s2.nii", "x/readme.txt", "x/out/s1/map_smoe.nii.gz", "x/out/s1/report.json",
                "x/out/.s1.abcdefgh.part/map_smoe.nii.gz", "x/.hidden/s3.nii.gz"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = cli.find_scans([tmp_path / "x", tmp_path / "x" / "s1.nii.gz"], exclude=tmp_path / "x" / "out")
    assert [p.name for p in found] == ["s2.nii", "s1.nii.gz"] or [p.name for p in found] == ["s1.nii.gz", "s2.nii"]
    assert len(found) == 2


@pytest.mark.parametrize("extra, message", [
    (["--methods", "gradcam,magic"], "unknown method"),
    (["--shard", "3/2"], "shard"),
    (["--threshold", "0.2", "--top-percent", "5"], "not both"),
    (["--threshold", "3"], "between 0 and 1"),
    (["--age", "70"], "--age applies to one scan"),
    (["--sex", "X"], "argument --sex: sex 'X' is not F or M"),  # the flag once, from argparse
    (["--workers", "0"], "at least 1"),
    (["--device", "tpu"], "invalid choice"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path, good_scans, tiny_model, extra, message):
    code, _, stderr = run_cli(["analyze", *good_scans, "--out", tmp_path / "out", "--model", tiny_model, *extra])
    assert code == 2 and message in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--age-a", "abc", "age 'abc' is not a number"),
    ("--age-b", "abc", "age 'abc' is not a number"),
    ("--age-b", "-5", "age -5 is not a plausible age in years"),
    ("--age-a", "", "expected a number of years"),
])
def test_compare_age_errors_name_the_flag_typed(tmp_path, flag, value, message):
    code, _, stderr = run_cli(["compare", tmp_path / "a.nii.gz", tmp_path / "b.nii.gz", "--out", tmp_path / "out",
                               flag, value])
    assert code == 2 and f"argument {flag}: {message}" in stderr  # the flag typed, once
    assert "--age:" not in stderr and "--age " not in stderr and f"{flag}: {flag}" not in stderr
    assert not (tmp_path / "out").exists()


def test_usage_errors_for_covariates_model_and_colliding_out(tmp_path, good_scans, tiny_model):
    table = tmp_path / "cov.csv"
    table.write_text("subject_age;weight\n70;80\n")
    code, _, stderr = run_cli(["analyze", good_scans[0], "--out", tmp_path / "o", "--model", tiny_model,
                               "--covariates", table])
    assert code == 2 and "unknown column layout" in stderr
    code, _, stderr = run_cli(["analyze", good_scans[0], "--out", tmp_path / "o", "--model", tmp_path / "none.pt"])
    assert code == 2 and "none.pt" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli(["analyze", tmp_path / "nothing-here", "--out", tmp_path / "o", "--model", tiny_model])
    assert code == 1 and len(stderr_lines_naming(stderr, tmp_path / "nothing-here")) == 1
    # BIDS-like: folder sub-01/ holding sub-01.nii.gz; --out at the root would write over that folder
    scan = tmp_path / "bids" / "sub-01" / "sub-01.nii.gz"
    scan.parent.mkdir(parents=True)
    shutil.copy(good_scans[0], scan)
    code, _, stderr = run_cli(["analyze", scan, "--out", tmp_path / "bids", "--model", tiny_model])
    assert code == 2 and "would replace the input" in stderr
    assert scan.read_bytes() == good_scans[0].read_bytes()
    assert run_cli(["analyze", "--out", tmp_path / "o"])[0] == 2


def test_unexpected_errors_become_one_internal_error_line(tmp_path, good_scans, tiny_model, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(pipeline, "analyze", broken)
    code, _, stderr = run_cli(["analyze", good_scans[0], "--out", tmp_path / "o", "--model", tiny_model,
                               "--sex", "M", "--quiet"])
    assert code == 1 and "Traceback" not in stderr
    (line,) = stderr_lines_naming(stderr, good_scans[0])
    assert line == f"{good_scans[0]}: internal error: ValueError: boom second line"
    assert not (tmp_path / "o" / "sub-01_T1w").exists()


def test_a_model_needing_sex_fails_each_scan_without_it_clearly(tmp_path, good_scans, tiny_model):
    code, _, stderr = run_cli(["analyze", good_scans[1], "--out", tmp_path / "o", "--model", tiny_model, "--quiet"])
    assert code == 1
    (line,) = stderr_lines_naming(stderr, good_scans[1])
    assert "needs the sex" in line


def test_models_lists_bundled_models_and_shows_a_card(tiny_model, monkeypatch, tmp_path):
    code, stdout, _ = run_cli(["models", tiny_model])
    assert code == 0
    assert "tiny" in stdout and "training ages: 40-90 years" in stdout
    monkeypatch.setattr(pipeline, "bundled_models", lambda: {"demo": tiny_model})
    code, stdout, _ = run_cli(["models"])
    header, row = stdout.splitlines()[:2]
    assert code == 0 and "intended use" in header
    assert row.split()[:3] == ["demo", "ba3d", "brain_age"] and "31x37x31 @ 6x6x6 mm" in row and "40-90 y" in row
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    code, _, stderr = run_cli(["models", junk])
    assert code == 1 and len(stderr_lines_naming(stderr, junk)) == 1


def test_demo_without_the_bundled_model_is_a_readable_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "bundled_models", lambda: {})
    code, _, stderr = run_cli(["demo", "--out", tmp_path / "demo"])
    assert code == 2 and "bundled demo model is not installed" in stderr and "Traceback" not in stderr


def test_demo_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, stderr = run_cli(["demo", "--out", tmp_path])
    assert code == 2 and "not a napari-bavis result" in stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.skipif("demo" not in pipeline.bundled_models(), reason="the bundled demo model is not installed yet")
def test_demo_runs_on_cpu(tmp_path):
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli(["demo", "--out", out, "--device", "cpu", "--quiet"])
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert f"brain age {report['brain_age']:.1f}" in stdout and str(out.resolve()) in stdout
    assert report["correction_method"] and (  # the demo model's card has a bias correction: printed with its method
        f"(bias-corrected {report['brain_age_gap_corrected']:+.1f} y, {report['correction_method']} method)" in stdout)
    assert set(report["maps"]) == set(pipeline.ALL_METHODS)
    scan = nib.load(out / "scan.nii.gz")
    for file in report["maps"].values():
        img = nib.load(out / file)
        assert img.shape == scan.shape and np.allclose(img.affine, scan.affine)
    assert (out / "figure.png").stat().st_size > 1000


def test_train_writes_a_checkpoint_that_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_BAVIS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "m.pt"
    args = ["train", "brain-age", str(out), "--subjects", "8", "--epochs", "1", "--grid-mm", "12", "--quiet", "--device", "cpu"]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    assert "wrote" in stdout and out.is_file()
    from napari_bavis import models

    _, card = models.load_checkpoint(out, device="cpu")
    assert card.bias_correction is not None and card.training_age_range
    assert "not for clinical use" in card.intended_use
    code, _, stderr = run_cli(["train", "brain-age", str(out), "--subjects", "9", "--epochs", "1", "--grid-mm", "12", "--quiet"])
    assert code == 1 and "\n" not in stderr.strip() and "Traceback" not in stderr  # other settings: one line, refused


def test_compare_writes_each_scans_maps_in_its_own_space(tmp_path, good_scans, tiny_siamese):
    out = tmp_path / "pair"
    code, stdout, stderr = run_cli(["compare", *good_scans, "--out", out, "--model", tiny_siamese,
                                    "--methods", "gradcam++", "--device", "cpu", "--quiet"])
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert -1.0 <= report["similarity"]["cosine"] <= 1.0
    assert f"{report['similarity']['cosine']:.3f}" in stdout
    for side, scan in zip("ab", good_scans):
        img = nib.load(out / report["maps"][side]["gradcam++"])
        source = nib.load(scan)
        assert img.shape == source.shape and np.array_equal(img.affine, source.affine)
        assert (out / f"figure_{side}.png").is_file()
    code, _, stderr = run_cli(["compare", *good_scans, "--out", tmp_path / "x", "--model", tiny_siamese.parent / "missing.pt"])
    assert code == 2


def test_compare_warns_for_an_age_outside_the_models_training_range(tmp_path, good_scans, tiny_siamese):
    from napari_bavis import models

    module, card = models.load_checkpoint(tiny_siamese, device="cpu")
    card.training_age_range = [65.0, 85.0]  # as the bundled demo-siamese
    ranged = tmp_path / "ranged-siamese.pt"
    models.save_checkpoint(ranged, module, card)
    out = tmp_path / "pair"
    code, stdout, stderr = run_cli(["compare", *good_scans, "--out", out, "--model", ranged, "--age-a", "25",
                                    "--age-b", "70", "--methods", "gradcam++", "--device", "cpu", "--quiet"])
    assert code == 0, stderr
    (line,) = stdout.splitlines()
    warning = "scan A: chronological age 25 is outside the model's training range 65-85 years"
    assert warning in line and "scan B: chronological age" not in line
    report = json.loads((out / "report.json").read_text())  # report.json's warnings are the Comparison's notes
    (age_note,) = [w for w in report["warnings"] if "chronological age" in w]
    assert age_note.startswith(warning) and line.endswith(" | ".join(report["warnings"]))
    assert report["record"]["chronological_ages"] == {"a": 25.0, "b": 70.0}


def test_the_console_script_entry_point(tiny_model):
    exe = Path(sys.executable).parent / "napari-bavis"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_bavis.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, "models", str(tiny_model)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("tiny ")
    bad = subprocess.run([*command, "analyze", "--methods", "nope"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
