"""`napari-bavis bids` on three real subjects of OpenNeuro ds002748 (../shared/data), when present."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from napari_bavis import pipeline
from napari_bavis.cli import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ds002748"
SUBJECTS = ("01", "52", "54")  # one patient (depr), two controls: enough to fit the correction on controls
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "participants.tsv").is_file(), reason=f"{DATA} is not there (real T1 scans)"),
    pytest.mark.skipif("ds002748" not in pipeline.bundled_models(), reason="the bundled ds002748 model is not installed"),
]


def _run(*argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


def test_three_real_subjects_participant_then_group(tmp_path):
    from napari_bavis.training.real_data import participant_rows, sex_of

    out = tmp_path / "napari-bavis"
    code, stdout, stderr = _run("bids", str(DATA), str(out), "participant", "--participant-label", *SUBJECTS, "--quiet")
    assert code == 0, stderr
    assert "3 done, 0 failed" in stderr
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["SourceDatasets"][0].get("DOI")
    for s in SUBJECTS:
        anat = out / f"sub-{s}" / "anat"
        assert {f"sub-{s}_brainage.json", f"sub-{s}_report.pdf", f"sub-{s}_desc-smoexgradcampp_map.nii.gz"} <= {
            p.name for p in anat.iterdir()}
    code, stdout, stderr = _run("bids", str(DATA), str(out), "group", "--fit-correction-on", "control")
    assert code == 0, stderr
    truth = {r["participant_id"]: r for r in participant_rows(DATA / "participants.tsv")}
    with open(out / "group" / "brainage.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["participant"] for r in rows] == [f"sub-{s}" for s in SUBJECTS]
    for r in rows:
        t = truth[r["participant"]]
        assert float(r["age"]) == float(t["age"]) and r["group"] == t["group"] and r["sex"] == sex_of(t)
        assert 10 < float(r["brain_age"]) < 80
    assert "group control: n=2" in stdout and "group depr: n=1" in stdout
