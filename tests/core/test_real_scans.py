"""Real T1 scans (OpenNeuro ds002748 in ../shared/data) through the whole pipeline with the bundled
real-brain model: what a user would see on their own scan. Skipped when the data or model is absent."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import pipeline
from napari_bavis.samples import restored, rotated

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ds002748"
SUBJECTS = ("sub-01", "sub-23", "sub-68")  # 39 y, 55 y (the oldest) and 52 y with the smallest head scale

pytestmark = [
    pytest.mark.skipif(not (DATA / "participants.tsv").is_file(), reason=f"real scans not found at {DATA}"),
    pytest.mark.skipif("ds002748" not in pipeline.bundled_models(), reason="the bundled ds002748 model is not installed"),
    pytest.mark.slow,
]


def _scan(subject: str) -> Path:
    return DATA / subject / "anat" / f"{subject}_T1w.nii.gz"


def _age(subject: str) -> float:
    for line in (DATA / "participants.tsv").read_text().splitlines()[1:]:
        cols = line.split("\t")
        if cols[0] == subject:
            return float(cols[1])
    raise KeyError(subject)


@pytest.fixture(scope="module")
def analyses():
    return {s: pipeline.analyze(_scan(s), chronological_age=_age(s)) for s in SUBJECTS}


def test_real_scans_pass_qc_with_the_default_model_and_a_plausible_age(analyses):
    for subject, a in analyses.items():
        assert a.card.name == "ds002748", subject  # the default for a user's own scan
        lo, hi = a.card.training_age_range
        assert lo <= a.prediction.brain_age <= hi, (subject, a.prediction.brain_age)
        assert not any("Registration" in n or "head is" in n for n in a.notes), (subject, a.notes)
        assert a.record["preprocessing_qc"]["brain_extraction_backend"] == "stripped", subject
        assert a.prediction.uncertainty is not None and 0 < a.prediction.uncertainty < 10, subject


def test_maps_of_a_real_scan_stay_inside_its_brain(analyses):
    a = analyses["sub-01"]
    from scipy import ndimage

    brain = ndimage.binary_fill_holes(nib.load(_scan("sub-01")).get_fdata() > 0)  # the stripped scan's brain
    for method, values in a.maps.items():
        source = np.asarray(a.map_image(method).dataobj)
        assert source.shape == brain.shape
        assert source.max() > 0, method
        assert source[~brain].max() == 0, method  # nothing drawn outside the scan's own brain


def test_the_same_scan_rotated_and_stored_otherwise_gets_the_same_brain_age_within_a_year(analyses):
    img = nib.load(_scan("sub-01"))
    base = analyses["sub-01"].prediction.brain_age
    for variant in (rotated(img, 15, 0), restored(rotated(img, -12, 2))):
        age = pipeline.analyze(variant, methods=()).prediction.brain_age
        assert abs(age - base) <= 1.0, (age, base)
