"""Brain extraction: stripped scans are detected and kept, heads with skull go through deepbet,
and the template mask is only a fallback that says so."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_bavis.errors import PreprocessError
from napari_bavis.preprocess import PreprocessSpec, preprocess
from napari_bavis.preprocess import brain_mask as bm
from napari_bavis.preprocess.orient import canonical

from moved_scans import KNOWN_POSE, moved_template
from skull_heads import dice, head_with_skull

DS002748 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ds002748"
#: The synthetic head lies on the MNI grid already: registration "none" keeps these runs short.
FAST = dict(bias_correction=False, registration="none", segmentation=False, smoothing_fwhm_mm=0.0)


def _canonical(img: nib.Nifti1Image):
    return canonical(np.asarray(img.get_fdata(dtype=np.float32)), img.affine)


@pytest.fixture(scope="module")
def head():
    """(2 mm head with skull, the template's brain mask on its grid)."""
    return head_with_skull(2.0)


def test_a_head_with_skull_is_not_taken_for_stripped(head):
    stripped, fig = bm.is_skull_stripped(*_canonical(head[0]))
    assert not stripped
    assert fig["dip_ratio"] < bm.MIN_STRIPPED_DIP_RATIO  # bright scalp over a dark skull
    assert fig["foreground_ml"] > bm.STRIPPED_FOREGROUND_ML[1]
    assert fig["reason"].startswith("failed:")


def test_a_small_head_is_caught_by_its_skull_not_only_its_size():
    small, _ = head_with_skull(1.5)  # the same head at 0.42 times the volume: brain-sized
    stripped, fig = bm.is_skull_stripped(*_canonical(small))
    lo, hi = bm.STRIPPED_FOREGROUND_ML
    assert lo <= fig["foreground_ml"] <= hi
    assert not stripped and "bright shell" in fig["reason"]


def test_the_same_head_with_its_skull_removed_is_detected_as_stripped(head):
    img, reference = head
    brain_only = nib.Nifti1Image(img.get_fdata(dtype=np.float32) * reference, img.affine)
    stripped, fig = bm.is_skull_stripped(*_canonical(brain_only))
    assert stripped, fig
    assert fig["dip_ratio"] >= bm.MIN_STRIPPED_DIP_RATIO


def test_a_noisy_stripped_scan_in_a_scanner_pose_is_detected_and_keeps_its_brain():
    pose = dict(voxel_size=(2.0, 2.0, 2.0), storage="LAS", source_resolution=2)
    scan = moved_template(KNOWN_POSE, bias_strength=0.3, noise_sd=0.02, **pose)
    truth = moved_template(KNOWN_POSE, kind="mask", **pose).get_fdata() >= 0.5
    data, affine = _canonical(scan)
    stripped, fig = bm.is_skull_stripped(data, affine)
    assert stripped, fig
    assert fig["background_level"] > 0  # the air is noise here, not exact zeros
    truth_canonical, _ = canonical(truth.astype(np.float32), scan.affine)
    assert dice(bm.foreground_mask(data), truth_canonical) >= 0.9


@pytest.mark.skipif(not DS002748.is_dir(), reason="the real scans (shared/data/ds002748) are not beside the project")
def test_a_real_skull_stripped_scan_is_detected_and_its_mask_is_its_own_foreground():
    path = sorted(DS002748.glob("sub-*/anat/*_T1w.nii.gz"))[0]
    data, affine = _canonical(nib.load(path))
    stripped, fig = bm.is_skull_stripped(data, affine)
    assert stripped, fig
    extraction = bm.extract_before_registration(data, affine, "auto")
    assert extraction.backend == "stripped" and extraction.record["method"] == bm.STRIPPED_METHOD
    assert dice(extraction.mask, data > 0) >= 0.99


def test_auto_keeps_a_stripped_scan_as_it_is(native_scan, native_result):
    result, calls = native_result
    assert result.qc["brain_extraction_backend"] == "stripped"
    assert result.qc["skull_stripped_detected"] is True
    assert result.record["steps"]["brain_extraction"]["method"] == bm.STRIPPED_METHOD
    steps = [step for step, _, _ in calls]
    assert steps.index("brain_extraction") < steps.index("registration")
    assert not any("template mask" in w for w in result.qc["warnings"])


@pytest.mark.slow  # deepbet's CNN runs at 256^3 whatever the input: about 7 s on one CPU thread
def test_auto_sends_a_head_with_skull_through_deepbet(head):
    img, reference = head
    result = preprocess(img, PreprocessSpec(**FAST))
    assert result.qc["brain_extraction_backend"] == "deepbet"
    assert result.qc["skull_stripped_detected"] is False
    assert result.record["steps"]["brain_extraction"]["method"] == bm.DEEPBET_METHOD
    assert dice(result.brain_mask.get_fdata(), reference) >= 0.9
    assert not any("template mask" in w for w in result.qc["warnings"])


def test_the_template_mask_is_a_fallback_that_warns_when_deepbet_fails(head, monkeypatch):
    def broken(data, affine):
        raise RuntimeError("TorchScript model could not be loaded")

    monkeypatch.setattr(bm, "deepbet_mask", broken)
    calls = []
    result = preprocess(head[0], PreprocessSpec(**FAST), progress=lambda step, i, n: calls.append((step, i)))
    assert result.qc["brain_extraction_backend"] == "template"
    assert result.qc["skull_stripped_detected"] is False
    fallback = [w for w in result.qc["warnings"] if "fell back to the registered template mask" in w]
    assert len(fallback) == 1 and "cortex" in fallback[0] and "TorchScript" in fallback[0]
    step = result.record["steps"]["brain_extraction"]
    assert step["method"] == bm.TEMPLATE_METHOD and "RuntimeError" in step["fallback_reason"]
    assert result.brain_mask is not None and dice(result.brain_mask.get_fdata(), head[1]) >= 0.8
    indices = [i for _, i in calls]
    assert indices == sorted(indices)  # the step moved after the registration; progress never goes back


def test_a_missing_deepbet_falls_back_too(head, monkeypatch):
    monkeypatch.setattr(bm, "deepbet_available", lambda: False)
    extraction = bm.extract_before_registration(*_canonical(head[0]), "auto")
    assert extraction.backend == "template" and extraction.mask is None
    assert "not installed" in extraction.warnings[0]


def test_deepbet_asked_for_explicitly_fails_in_one_line(head, monkeypatch):
    def broken(data, affine):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(bm, "deepbet_mask", broken)
    with pytest.raises(PreprocessError) as err:
        bm.extract_before_registration(*_canonical(head[0]), "deepbet")
    assert "deepbet" in str(err.value) and "out of memory" in str(err.value) and "\n" not in str(err.value)
