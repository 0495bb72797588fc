import numpy as np
import pytest
from moved_scans import landmark_error_mm, moved_template, pose_matrix
from scipy import ndimage

import nibabel as nib
from napari_bavis.errors import PreprocessError
from napari_bavis.preprocess import PreprocessSpec, preprocess
from napari_bavis.preprocess.register import register_to_template


def _random_cases(n, seed=2026):
    rng = np.random.default_rng(seed)
    for case in range(n):
        yield (
            pose_matrix(rng.uniform(-20, 20, 3), rng.uniform(-30, 30, 3), rng.uniform(0.9, 1.1, 3)),
            ("LPS", "LAS")[case % 2],
            case,
        )


@pytest.mark.slow
def test_known_random_affines_are_recovered_within_2mm(brain_landmarks_mm):
    """Six random poses (within +-20 deg, +-30 mm, scale 0.9-1.1; both storage orders): the suite's
    longest test at ten (60 s of the 15-minute budget); the edge-of-range case is tested below."""
    errors = []
    for true_pose, storage, case in _random_cases(6):
        scan = moved_template(true_pose, voxel_size=(1.2, 1.2, 1.2), storage=storage, bias_strength=0.2, noise_sd=0.01, seed=case)
        reg = register_to_template(scan.get_fdata(dtype=np.float32), scan.affine)
        errors.append(landmark_error_mm(true_pose, reg.template_to_scan, brain_landmarks_mm))
    assert np.mean(errors) <= 2.0, errors
    assert max(errors) <= 4.0, errors


def test_large_pose_at_the_edge_of_the_range_is_recovered(brain_landmarks_mm):
    """+-30 deg and +-40 mm: the rigid search over rotation starts must find the basin."""
    true_pose = pose_matrix((30, -12, 18), (-40, 35, 30))
    scan = moved_template(true_pose, voxel_size=(2.0, 2.0, 2.0), storage="LPS", source_resolution=2)
    reg = register_to_template(scan.get_fdata(dtype=np.float32), scan.affine)
    assert landmark_error_mm(true_pose, reg.template_to_scan, brain_landmarks_mm) <= 2.0
    assert reg.correlation > 0.9


def _non_brain(kind):
    shape = (90, 100, 90)
    if kind == "smooth-noise":
        data = ndimage.gaussian_filter(np.random.default_rng(1).normal(size=shape), 3.0)
        data = data - data.min()
    else:
        data = np.zeros(shape)
        data[20:70, 20:80, 20:70] = 100.0
    return nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))


@pytest.mark.parametrize("kind", ["smooth-noise", "cube"])
def test_non_brain_image_fails_registration_naming_the_qc_measure(kind):
    spec = PreprocessSpec(bias_correction=False, segmentation=False)
    with pytest.raises(PreprocessError) as info:
        preprocess(_non_brain(kind), spec)
    message = str(info.value)
    assert "correlation with the template" in message and "\n" not in message


def test_a_head_with_skull_and_scalp_registers_to_the_skull_stripped_template(brain_landmarks_mm):
    """Real scans keep their skull; the template has none. A dark skull and bright scalp shell must not pull the fit."""
    from nibabel.processing import resample_from_to

    from napari_bavis.preprocess.templates import template

    t1, affine = template("t1", 2)
    brain = template("mask", 2)[0] > 0.5
    pad = 10
    outside_mm = ndimage.distance_transform_edt(~np.pad(brain, pad)) * 2.0
    head = np.pad(np.array(t1), pad)
    head[(outside_mm > 0) & (outside_mm <= 6)] = 0.08  # skull
    head[(outside_mm > 6) & (outside_mm <= 14)] = 0.75  # scalp fat
    head_affine = affine.copy()
    head_affine[:3, 3] -= 2.0 * pad
    true_pose = pose_matrix((-18, 6, 14), (-25, 20, -12), (1.05, 0.95, 1.0))
    shape = (110, 130, 110)
    scan_affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    scan_affine[:3, 3] = np.array([0.0, -18.0, 18.0]) - scan_affine[:3, :3] @ (np.array(shape) / 2)
    scan = resample_from_to(nib.Nifti1Image(head.astype(np.float32), true_pose @ head_affine), (shape, scan_affine), order=1)
    reg = register_to_template(scan.get_fdata(dtype=np.float32), scan.affine)
    assert landmark_error_mm(true_pose, reg.template_to_scan, brain_landmarks_mm) <= 2.0
