"""What `analyze` tells the user about each scan: the model used, brain age ± uncertainty, every
warning (preprocessing QC, a brain age outside the training range) in report.json, results.csv and
the per-scan stdout line; a .mgz in a folder is found; the default model is the real-brain one."""

from __future__ import annotations

import csv
import inspect
import json

import nibabel as nib
import numpy as np
import pytest
from cli_builders import scanner_scan, tiny_checkpoint
from test_cli import run_cli

from napari_bavis import cli, pipeline, settings
from napari_bavis.errors import CheckpointError
from napari_bavis.io import NIFTI_SUFFIXES

#: Far below the tiny models' ~60 years: every prediction falls outside this training range.
YOUNG_RANGE = (20.0, 30.0)
#: Scales the head's volume by 1.25**3 ~ 1.95: beyond the preprocessing's plausible head sizes.
BIG_HEAD = 1.25


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run over a folder: a .mgz scan and an oversized head, a slab model (so an uncertainty)
    trained on 20-30 year olds, and chronological ages inside that range."""
    root = tmp_path_factory.mktemp("outputs")
    folder = root / "scans"
    (folder / "deep").mkdir(parents=True)
    mgz_img = scanner_scan((6, -4, 3), (4, -6, 8))
    mgz = folder / "deep" / "sub-mgz_T1w.mgz"
    nib.save(nib.MGHImage(np.asarray(mgz_img.dataobj, dtype=np.float32), mgz_img.affine), mgz)
    big_img = scanner_scan((-5, 3, -8), (-3, 5, -4))
    big = folder / "sub-big_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(big_img.dataobj), np.diag([BIG_HEAD] * 3 + [1.0]) @ big_img.affine), big)
    model = tiny_checkpoint(root / "young.pt", name="young-slab", training_age_range=YOUNG_RANGE, slabs=True)
    covariates = root / "ages.csv"
    covariates.write_text("scan,age,sex\nsub-mgz_T1w,25,F\nsub-big_T1w,28,M\n")
    out = root / "out"
    code, stdout, stderr = run_cli(["analyze", folder, "--out", out, "--model", model, "--covariates", covariates,
                                    "--methods", "gradcam++", "--device", "cpu", "--quiet"])
    with open(out / "results.csv", newline="") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    reports = {name: json.loads((out / name / "report.json").read_text()) for name in rows if rows[name]["status"] == "done"}
    return {"code": code, "stdout": stdout, "stderr": stderr, "rows": rows, "reports": reports, "mgz": mgz, "big": big}


def test_a_mgz_file_in_a_folder_is_analysed(run):
    assert run["code"] == 0, run["stderr"]
    assert ".mgz" in NIFTI_SUFFIXES
    assert run["rows"]["sub-mgz_T1w"]["status"] == "done"
    assert run["rows"]["sub-mgz_T1w"]["scan"] == str(run["mgz"])
    assert run["reports"]["sub-mgz_T1w"]["scan"] == str(run["mgz"])


def test_find_scans_takes_every_suffix_the_reader_opens(tmp_path):
    names = [f"s{i}{suffix}" for i, suffix in enumerate(NIFTI_SUFFIXES)] + ["upper.MGZ", "notes.txt", "s.mgh.bak"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    found = sorted(p.name for p in cli.find_scans([tmp_path]))
    assert found == sorted([f"s{i}{suffix}" for i, suffix in enumerate(NIFTI_SUFFIXES)] + ["upper.MGZ"])


def test_a_brain_age_outside_the_training_range_is_a_warning_in_report_and_csv(run):
    for name, report in run["reports"].items():
        lo, hi = YOUNG_RANGE
        assert not lo <= report["brain_age"] <= hi  # the prediction, not the given age, is out of range
        assert lo <= report["chronological_age"] <= hi
        expected = [w for w in report["warnings"] if f"brain age {report['brain_age']:.1f} is outside" in w]
        assert len(expected) == 1, report["warnings"]
        assert expected[0] in run["rows"][name]["warnings"].split(" | ")
        assert run["rows"][name]["out_of_range"] == "yes"
        assert "chronological age" not in expected[0]


def test_a_preprocessing_qc_warning_reaches_report_and_csv(run):
    report, row = run["reports"]["sub-big_T1w"], run["rows"]["sub-big_T1w"]
    qc = report["record"]["preprocessing_qc"]["warnings"]
    assert any("times the template's volume" in w for w in qc), qc
    for warning in qc:
        assert warning in report["warnings"] and warning in row["warnings"].split(" | ")
    assert len(report["warnings"]) == len(set(report["warnings"]))  # each once
    normal = run["reports"]["sub-mgz_T1w"]
    assert not any("times the template's volume" in w for w in normal["warnings"])


def test_uncertainty_and_model_in_report_csv_and_the_per_scan_line(run):
    lines = run["stdout"].splitlines()
    for name, report in run["reports"].items():
        row = run["rows"][name]
        slabs = report["prediction"]["slab_ages"]
        assert report["brain_age_uncertainty"] > 0
        assert report["brain_age_uncertainty"] == pytest.approx(float(np.std(slabs, ddof=1)))
        assert float(row["brain_age_uncertainty"]) == pytest.approx(report["brain_age_uncertainty"], abs=0.006)
        version = report["model"]["version"]
        assert row["model"] == f"young-slab {version}"
        (line,) = [line for line in lines if line.startswith(f"{row['scan']}: ")]
        assert f"brain age {report['brain_age']:.1f} ± {report['brain_age_uncertainty']:.1f} y" in line
        assert f"model young-slab {version}" in line
        assert f"gap {report['brain_age_gap']:+.1f} y" in line
        corrected = report["brain_age_gap_corrected"]  # beside the raw gap: the corrected one and its method, or why not
        assert (f"gap {report['brain_age_gap']:+.1f} y (bias-corrected {corrected:+.1f} y, "
                f"{report['correction_method']} method)" in line if corrected is not None
                else "(no bias correction in the model card)" in line)
        assert all(w in line for w in report["warnings"])


def test_without_an_uncertainty_the_age_has_no_plus_minus():
    report = {"brain_age": 61.234, "brain_age_uncertainty": None, "model": {"name": "tiny", "version": "0.3"},
              "warnings": ["a", "a", "b"], "prediction": {}}
    row = cli.result_row("x", "x.nii.gz", "done", report)
    assert row["brain_age"] == "61.23" and row["brain_age_uncertainty"] == ""
    assert row["model"] == "tiny 0.3" and row["warnings"] == "a | b"
    from napari_bavis.summary import report_line

    assert report_line(report).startswith("brain age 61.2 y; model tiny 0.3") and "±" not in report_line(report)


def test_the_default_model_is_the_real_brain_model():
    assert pipeline.DEFAULT_MODEL == "ds002748" and pipeline.BUNDLED["ds002748"] == "ds002748.pt"
    assert inspect.signature(pipeline.analyze).parameters["model"].default == pipeline.DEFAULT_MODEL
    assert settings.DEFAULTS["model"] == pipeline.DEFAULT_MODEL
    parser = cli.build_parser()
    assert parser.parse_args(["analyze", "scan.nii.gz", "--out", "o"]).model == pipeline.DEFAULT_MODEL
    assert parser.parse_args(["demo"]).model == "demo"  # the phantom demo keeps the phantom model


@pytest.mark.skipif("ds002748" in pipeline.bundled_models(), reason="the real-brain model is installed")
def test_a_missing_default_model_is_one_readable_line(tmp_path, good_scans):
    code, stdout, stderr = run_cli(["analyze", good_scans[0], "--out", tmp_path / "o", "--quiet"])
    assert code == 2 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert "ds002748" in line and "not installed" in line
    assert not (tmp_path / "o").exists()
    with pytest.raises(CheckpointError) as err:
        pipeline.analyze(good_scans[0], device="cpu")
    assert "ds002748" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif("ds002748" not in pipeline.bundled_models(), reason="the real-brain model ds002748.pt is not bundled yet")
def test_the_bundled_real_brain_model_is_a_brain_age_model_of_adults():
    _, card = pipeline.load_model(pipeline.DEFAULT_MODEL, "cpu")
    assert card.task == "brain_age" and card.training_age_range
    lo, hi = card.training_age_range
    assert 15 <= lo < hi <= 60
