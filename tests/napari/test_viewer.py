"""In a real viewer (needs a display: run under xvfb-run)."""

import nibabel as nib
import numpy as np
import pytest

from napari_bavis.io import scan_from_image
from napari_bavis.napari._display import camera_of
from napari_bavis.samples import mni_t1, synthetic_native_scan


@pytest.mark.parametrize(
    "key,image",
    [("mni152_t1", lambda: mni_t1(1)), ("synthetic_native", synthetic_native_scan)],
)
def test_samples_open_with_scan_transform_and_anterior_up(make_napari_viewer, key, image):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-bavis", key)
    (layer,) = viewer.layers
    expected = scan_from_image(image())
    np.testing.assert_allclose(layer.scale, expected.scale, rtol=1e-6)
    np.testing.assert_allclose(layer.translate, expected.translate, atol=1e-4)
    assert tuple(layer.axis_labels) == ("S", "A", "R")
    assert layer.data.shape == expected.data.shape
    assert tuple(viewer.dims.order) == (0, 1, 2)  # slider walks axial (S) slices
    assert tuple(camera_of(viewer).orientation2d) == ("up", "right")  # anterior up, neurological


@pytest.mark.parametrize("key", ["young_healthy", "old_ad_like"])
def test_phantom_samples_open_in_their_native_space(make_napari_viewer, key):
    from napari_bavis.phantoms import sample_subject

    viewer = make_napari_viewer()
    viewer.open_sample("napari-bavis", key)
    (layer,) = viewer.layers
    expected = scan_from_image(sample_subject(key.replace("_", " ").replace("ad like", "AD-like")))
    np.testing.assert_allclose(layer.translate, expected.translate, atol=1e-4)
    assert layer.data.shape == expected.data.shape
    assert layer.name.startswith("phantom ")


def test_synthetic_sample_is_a_scanner_pose_not_the_template():
    img = synthetic_native_scan()
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.header.get_zooms() == pytest.approx((1.2, 1.2, 1.4))
    assert not np.allclose(img.affine, mni_t1(1).affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(synthetic_native_scan().dataobj))


def test_display_widget_docks_and_switches_convention(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-bavis", "mni152_t1")
    scale_before = tuple(viewer.layers[0].scale)
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain display")
    widget.convention.value = "radiological"
    assert tuple(camera_of(viewer).orientation2d) == ("up", "left")
    assert tuple(viewer.layers[0].scale) == scale_before  # a camera flip, never a negative scale
    widget.plane.value = "coronal"
    assert tuple(viewer.dims.order) == (1, 0, 2)
    widget.plane.value = "sagittal"
    assert tuple(viewer.dims.order) == (2, 0, 1)
    # the choice persists for the next session
    from napari_bavis import settings

    assert settings.load()["convention"] == "radiological"


def test_display_dock_leaves_the_dock_area_to_the_analysis_below_it(make_napari_viewer, qtbot):
    """The demo docks Brain display, then the analysis: napari gave the first dock most of an
    800 px area (the analysis got ~100 px); the three-row display dock keeps only its own height."""
    viewer = make_napari_viewer(show=True)
    dock_d, _ = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain display")
    dock_a, _ = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain age analysis")
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(1280, 800)
    qtbot.wait(300)
    assert dock_d.height() < 200 and dock_a.height() > 3 * dock_d.height(), (dock_d.height(), dock_a.height())


def test_opening_a_bad_file_adds_nothing_and_raises_nothing(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    bad = tmp_path / "broken.nii.gz"
    bad.write_text("not an image")
    viewer.open(str(bad), plugin="napari-bavis")
    assert len(viewer.layers) == 0


def test_screenshot_shows_anterior_up(make_napari_viewer, tmp_path):
    """Render the axial mid-slice: the frontal pole (anterior) is in the upper half of the canvas."""
    viewer = make_napari_viewer(show=True)  # offscreen canvases render black under Xvfb
    data = np.zeros((20, 40, 30), np.float32)
    data[:, 30:38, 10:20] = 1.0  # a block at high A (anterior)
    img = nib.Nifti1Image(np.transpose(data, (2, 1, 0)).copy(), np.diag([1.0, 1.0, 1.0, 1.0]))  # RAS storage
    path = tmp_path / "block.nii.gz"
    nib.save(img, path)
    viewer.open(str(path), plugin="napari-bavis")
    viewer.dims.set_point(0, 10)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    bright = shot[..., :3].mean(axis=2) > 128
    rows = np.nonzero(bright.any(axis=1))[0]
    assert rows.size > 0
    assert rows.mean() < shot.shape[0] / 2
