"""`napari-bavis bids`: participant level (BIDS derivatives, resume, bad scans) and group level."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import subprocess

import numpy as np
import pytest
from bids_options import FAST, SCANS

from napari_bavis.cli import main
from napari_bavis.cohort import bids

pytestmark = pytest.mark.slow
PREFIXES = ("sub-01", "sub-02_ses-01", "sub-02_ses-02")


def _run(*argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


def _anat(out, prefix):
    parts = prefix.split("_")
    return out.joinpath(*parts, "anat")


def test_participant_level_writes_bids_derivatives(participant_run, tiny_bids):
    out, code, stdout, stderr = participant_run
    assert code == 1  # sub-03's file is broken; the others go on
    bad = [line for line in stderr.splitlines() if "sub-03" in line]
    assert len(bad) == 1 and bad[0].startswith(str(tiny_bids / "sub-03" / "anat" / "sub-03_T1w.nii.gz") + ": ")
    assert "Traceback" not in stderr and "3 done, 1 failed" in stderr
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "napari-bavis" and generated["Version"]
    assert generated.get("CodeURL") == bids.code_url()  # the package's declared URL, or no key (never a made-up one)
    assert description["SourceDatasets"][0]["DOI"] == "doi:10.0000/tiny"
    assert description["SourceDatasets"][0]["URL"] == tiny_bids.resolve().as_uri()
    import nibabel as nib

    for (sub, ses, _, age, sex), prefix in zip(SCANS, PREFIXES):
        anat = _anat(out, prefix)
        t1 = nib.load(tiny_bids.joinpath(*(f"sub-{sub}", *([f"ses-{ses}"] if ses else []), "anat", f"{prefix}_T1w.nii.gz")))
        native = nib.load(anat / f"{prefix}_desc-gradcampp_map.nii.gz")
        assert native.shape == t1.shape and np.allclose(native.affine, t1.affine, atol=1e-4)  # the T1w's own space
        assert (anat / f"{prefix}_space-MNI152NLin2009aSym_desc-gradcampp_map.nii.gz").is_file()
        assert (anat / f"{prefix}_report.pdf").read_bytes().startswith(b"%PDF")
        report = json.loads((anat / f"{prefix}_brainage.json").read_text())
        assert report["chronological_age"] == age  # sessions.tsv gives ses-02 its own age
        assert report["bids"] == {"subject": sub, "session": ses, "age": age, "sex": sex}
        assert report["Sources"] == [f"bids:raw:{t1.get_filename().split(str(tiny_bids) + '/')[1]}"]
        assert math.isfinite(report["brain_age"]) and f"{prefix}: brain age" in stdout
    assert not (out / "sub-03").exists() and not (out / ".bavis-work").exists()


def test_second_participant_run_skips_finished_scans(participant_run, tiny_bids):
    out = participant_run[0]
    reports = sorted(out.glob("sub-*/**/*_brainage.json"))
    before = {p: p.stat().st_mtime_ns for p in reports}
    code, stdout, stderr = _run("bids", str(tiny_bids), str(out), "participant", *FAST)
    assert code == 1 and "0 done, 1 failed, 3 skipped" in stderr  # only the broken one is tried again
    assert {p: p.stat().st_mtime_ns for p in reports} == before
    code, _, stderr = _run("bids", str(tiny_bids), str(out), "participant", "--participant-label", "01", *FAST)
    assert code == 0 and "0 done, 0 failed, 1 skipped" in stderr
    code, _, stderr = _run("bids", str(tiny_bids), str(out), "participant", "--session-label", "ses-02", *FAST)
    assert code == 0 and "0 done, 0 failed, 1 skipped" in stderr  # only sub-02_ses-02 has that session
    # --shard i/n: round robin over the sorted scans (sub-01, sub-02_ses-01, sub-02_ses-02, sub-03)
    code, _, stderr = _run("bids", str(tiny_bids), str(out), "participant", "--shard", "1/2", *FAST)
    assert code == 0 and "0 done, 0 failed, 2 skipped" in stderr
    code, _, stderr = _run("bids", str(tiny_bids), str(out), "participant", "--shard", "2/2", *FAST)
    assert code == 1 and "0 done, 1 failed, 1 skipped" in stderr and "sub-03_T1w" in stderr


def test_group_level_table_and_gap_by_group(participant_run, tiny_bids):
    out = participant_run[0]
    code, stdout, stderr = _run("bids", str(tiny_bids), str(out), "group", "--fit-correction-on", "patient")
    assert code == 0, stderr
    with open(out / "group" / "brainage.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["participant"], r["session"]) for r in rows] == [("sub-01", ""), ("sub-02", "ses-01"), ("sub-02", "ses-02")]
    assert [r["group"] for r in rows] == ["control", "patient", "patient"]
    assert [r["sex"] for r in rows] == ["F", "M", "M"] and [float(r["age"]) for r in rows] == [s[3] for s in SCANS]
    for r in rows:
        assert float(r["brain_age_gap"]) == pytest.approx(float(r["brain_age"]) - float(r["age"]), abs=0.011)
    # fitted on the two patient scans: their corrected gaps are the residuals of a line through two points
    patients = [r for r in rows if r["group"] == "patient"]
    assert all(abs(float(r["brain_age_gap_corrected"])) < 0.011 for r in patients)
    fit = json.loads((out / "group" / "correction.json").read_text())
    assert fit["value"] == "patient" and fit["n"] == 2
    control = rows[0]
    expected = float(control["brain_age"]) - (fit["slope"] * 62.0 + fit["intercept"])
    assert float(control["brain_age_gap_corrected"]) == pytest.approx(expected, abs=0.011)
    with open(out / "group" / "gap_by_group.tsv", newline="") as handle:
        stats = {r["group"]: r for r in csv.DictReader(handle, delimiter="\t")}
    gaps = [float(r["brain_age_gap"]) for r in patients]
    assert stats["patient"]["n"] == "2" and float(stats["patient"]["gap_mean"]) == pytest.approx(np.mean(gaps), abs=0.011)
    assert float(stats["patient"]["gap_sd"]) == pytest.approx(np.std(gaps, ddof=1), abs=0.011)
    assert stats["control"]["n"] == "1" and stats["all"]["n"] == "3"
    assert f"group patient: n=2, gap {np.mean(gaps):+.2f}" in stdout
    for g in ("control", "patient", "all"):
        assert (out / "group" / f"group-{g}_space-MNI152NLin2009aSym_desc-gradcampp_mean.nii.gz").is_file()
    import nibabel as nib

    def mni(prefix):
        return np.asarray(nib.load(_anat(out, prefix) / f"{prefix}_space-MNI152NLin2009aSym_desc-gradcampp_map.nii.gz").dataobj)

    mean = np.asarray(nib.load(out / "group" / "group-patient_sex-M_space-MNI152NLin2009aSym_desc-gradcampp_mean.nii.gz").dataobj)
    assert np.allclose(mean, (mni("sub-02_ses-01") + mni("sub-02_ses-02")) / 2, atol=1e-6)  # group × sex mean
    assert not (out / "group" / "group-patient_sex-F_space-MNI152NLin2009aSym_desc-gradcampp_mean.nii.gz").exists()
    assert (out / "group" / "summary.png").stat().st_size > 10_000
    assert (out / "group" / "summary.pdf").read_bytes().startswith(b"%PDF")


def test_group_correction_on_a_group_too_small_is_one_line(participant_run, tiny_bids):
    code, _, stderr = _run("bids", str(tiny_bids), str(participant_run[0]), "group", "--fit-correction-on", "control")
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and "at least 2 scans" in stderr


def test_bad_bids_arguments_are_usage_errors(tiny_bids, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        with contextlib.redirect_stderr(io.StringIO()):
            main(["bids", str(tiny_bids), str(tmp_path / "o"), "participant", "--participant-label", "99", *FAST])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        with contextlib.redirect_stderr(io.StringIO()):
            main(["bids", str(tmp_path), str(tmp_path / "o"), "participant", *FAST])
    assert exit_.value.code == 2


def test_report_pdf_has_three_pages_and_renders(participant_run, tmp_path):
    from napari_bavis.report_pdf import PAGES

    pdf = _anat(participant_run[0], "sub-02_ses-02") / "sub-02_ses-02_report.pdf"
    data = pdf.read_bytes()
    import re

    assert len(re.findall(rb"/Type\s*/Page\b", data)) == PAGES == 3
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: cannot render the PDF")
    subprocess.run(["pdftoppm", "-r", "40", "-f", "1", "-l", "1", "-png", str(pdf), str(tmp_path / "page")], check=True)
    import matplotlib.image as mpimg

    page = mpimg.imread(next(tmp_path.glob("page*.png")))
    assert page.std() > 0.05 and (page[..., :3].mean(axis=2) < 0.5).mean() > 0.02  # text and images, not blank
