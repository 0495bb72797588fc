"""Native-space phantoms (scanner pose), cohorts and sample-data subjects."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_bavis.grid import Grid
from napari_bavis.phantoms import PhantomError, make_cohort, make_subject, plan_cohort, sample_subject

GRID_3MM = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)


def _brain_centre_mm(data, affine):
    weights = np.where(data > 0.1 * np.percentile(data, 99.5), data, 0.0)
    idx = np.array(ndi.center_of_mass(weights))
    return affine[:3, :3] @ idx + affine[:3, 3]


@pytest.fixture(scope="module")
def native_subject():
    return make_subject(11, 70.0, "M", 0.5, grid=GRID_3MM, native=True)


def test_native_image_is_in_the_requested_scanner_pose(native_subject):
    image, pose = native_subject.t1_native, native_subject.native_pose
    assert isinstance(image, nib.Nifti1Image) and image.ndim == 3
    assert "".join(nib.aff2axcodes(image.affine)) == pose["storage"]
    zooms = image.header.get_zooms()
    assert np.allclose(sorted(zooms), sorted(pose["voxel_size"]), atol=1e-3)
    assert all(1.0 <= z <= 1.2 for z in zooms)
    assert max(abs(r) for r in pose["rotation_deg"]) > 1.0
    # The head turned about its own centre and moved by the pose's translation.
    native_centre = _brain_centre_mm(np.asarray(image.dataobj), image.affine)
    model_centre = _brain_centre_mm(native_subject.t1_model, GRID_3MM.affine)
    assert np.linalg.norm(native_centre - np.asarray(pose["translation_mm"]) - model_centre) < 4.0


def test_to_mni_maps_the_native_head_back_onto_the_model_image(native_subject):
    image, to_mni = native_subject.t1_native, native_subject.native_pose["to_mni"]
    # model voxel -> MNI mm -> scanner mm -> native voxel
    matrix = np.linalg.inv(image.affine) @ np.linalg.inv(to_mni) @ GRID_3MM.affine
    back = ndi.affine_transform(np.asarray(image.dataobj, np.float32), matrix[:3, :3], matrix[:3, 3], output_shape=GRID_3MM.shape, order=1)
    model = native_subject.t1_model
    brain = native_subject.masks["brain"]
    assert np.corrcoef(back[brain], model[brain])[0, 1] > 0.85
    assert np.linalg.norm(_brain_centre_mm(back, GRID_3MM.affine) - _brain_centre_mm(model, GRID_3MM.affine)) < 3.0
    # Without the pose the images do not line up.
    naive = np.linalg.inv(image.affine) @ GRID_3MM.affine
    unposed = ndi.affine_transform(np.asarray(image.dataobj, np.float32), naive[:3, :3], naive[:3, 3], output_shape=GRID_3MM.shape, order=1)
    assert np.corrcoef(unposed[brain], model[brain])[0, 1] < 0.7


def test_plan_is_deterministic_and_subject_i_does_not_depend_on_n():
    short, long = plan_cohort(5, seed=3), plan_cohort(40, seed=3)
    assert short == long[:5] == plan_cohort(5, seed=3)
    assert plan_cohort(5, seed=4) != short
    assert len({s["seed"] for s in long}) == 40
    for s in long:
        assert 20.0 <= s["age"] <= 90.0 and s["sex"] in ("F", "M")
        if s["age"] < 55.0:
            assert s["cdr"] == 0.0
    assert {s["cdr"] for s in long if s["age"] >= 55.0} - {0.0}, "no diseased subject among 40"
    assert {s["cdr"] for s in plan_cohort(30, seed=3, cdr_weights={0.0: 1.0})} == {0.0}
    assert {s["cdr"] for s in plan_cohort(20, seed=3, ages=(60, 90), cdr_weights={2.0: 1.0})} == {2.0}
    assert all(60.0 <= s["age"] <= 70.0 for s in plan_cohort(20, seed=3, ages=(60, 70)))


def test_cohort_yields_subjects_with_the_planned_labels():
    plan = plan_cohort(2, seed=8)
    subjects = list(make_cohort(2, seed=8, grid=GRID_3MM))
    assert [s.labels for s in subjects] == plan
    assert subjects[0].grid == GRID_3MM and subjects[0].t1_native is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: plan_cohort(3, seed=1, ages=(10, 50)),
        lambda: plan_cohort(3, seed=1, cdr_weights={3.0: 1.0}),
        lambda: plan_cohort(-1, seed=1),
        lambda: sample_subject("middle-aged"),
    ],
)
def test_bad_cohort_arguments_raise(call):
    with pytest.raises(PhantomError):
        call()


def test_sample_subject_is_a_native_scan():
    image = sample_subject("young healthy")
    assert isinstance(image, nib.Nifti1Image) and image.ndim == 3
    assert all(1.0 <= z <= 1.2 for z in image.header.get_zooms())
    data = np.asarray(image.dataobj)
    assert data.dtype == np.float32 and np.isfinite(data).all() and data.max() > 0.5
