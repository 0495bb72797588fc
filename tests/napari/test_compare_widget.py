"""The compare (Siamese) dock widget in a real viewer (run under xvfb-run; CPU; tiny checkpoint)."""

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import models
from napari_bavis.napari import _layers, _map_view, _notify
from napari_bavis.samples import mni_t1, to_scanner_space

from test_analysis_widget import FAST_PREPROCESSING, TINY_GRID

TINY_SIAMESE = {"channels": [2, 2, 2, 2, 2], "final_channels": 4, "head": [8, 4], "dropout": 0.0}


@pytest.fixture(scope="module")
def siamese_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("siamese")
    model = models.build("siamese3d", **TINY_SIAMESE)
    card = models.default_card(
        "siamese3d", name="tiny-siamese", grid=TINY_GRID.to_dict(), input_kind="t1",
        architecture_kwargs=TINY_SIAMESE, preprocessing=FAST_PREPROCESSING,
        reference_embeddings={"healthy": [1.0, 0.0, 0.0, 0.0], "AD-like": [0.0, 1.0, 0.0, 0.0]},
    )
    models.save_checkpoint(folder / "siamese.pt", model, card)
    a, b = folder / "first.nii.gz", folder / "second.nii.gz"
    nib.save(to_scanner_space(mni_t1(2), rotation_deg=(3, 0, 0), voxel_size=(4, 4, 4)), a)
    nib.save(to_scanner_space(mni_t1(2), rotation_deg=(0, 0, -4), translation_mm=(2, 3, -4), voxel_size=(4, 4, 5)), b)
    return folder / "siamese.pt", a, b


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(_notify, "show_error", shown.append)  # every widget notifies through _notify
    monkeypatch.setattr(_notify, "show_warning", lambda *_: None)
    monkeypatch.setattr(_notify, "show_info", lambda *_: None)
    return shown


def test_compare_two_scans_end_to_end(make_napari_viewer, qtbot, siamese_files, errors):
    ckpt, path_a, path_b = siamese_files
    viewer = make_napari_viewer()
    (scan_a,) = viewer.open(str(path_a), plugin="napari-bavis")
    (scan_b,) = viewer.open(str(path_b), plugin="napari-bavis")
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Compare two scans")
    widget.model.set_checkpoint(ckpt)
    qtbot.waitUntil(lambda: not widget.model.inspecting, timeout=30000)
    assert "tiny-siamese" in widget.model.card_text.text()
    widget.image_a.setCurrentText(scan_a.name)
    widget.image_b.setCurrentText(scan_b.name)
    for method, box in widget.methods.items():
        box.setChecked(method == "gradcam++")
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert errors == []

    sim = widget.comparison.similarity
    text = widget.results.toPlainText()
    assert f"Similarity (cosine): {sim.cosine:.3f}" in text and f"Distance: {sim.distance:.3f}" in text
    assert f"{scan_a.name}: nearest reference {sim.nearest_reference_a}" in text
    assert sim.nearest_reference_a in ("healthy", "AD-like")
    # one map per scan, each with its own scan's geometry
    maps = {layer.name: layer for layer in _layers.result_layers(viewer, "compare", "map")}
    model = widget.comparison.card.name  # each map layer names its scan and its model
    assert set(maps) == {f"{scan_a.name} · Grad-CAM++ · {model}", f"{scan_b.name} · Grad-CAM++ · {model}"}
    assert text.startswith(f"Scans: {scan_a.name} vs {scan_b.name} · model {model}")
    for scan in (scan_a, scan_b):
        layer = maps[f"{scan.name} · Grad-CAM++ · {model}"]
        np.testing.assert_array_equal(layer.scale, scan.scale)
        np.testing.assert_array_equal(layer.translate, scan.translate)
        assert tuple(layer.axis_labels) == tuple(scan.axis_labels) and layer.data.shape == scan.data.shape
        assert layer.metadata["bavis_source"]["path"] == scan.metadata["bavis_source"]["path"]
    # the shared threshold tools work on both maps, without recomputation
    widget.maps.set_threshold(0.6, "value")
    for layer in maps.values():
        assert layer.colormap.map(np.array([0.59]))[0, 3] == 0.0
        assert layer.colormap.map(np.array([0.62]))[0, 3] == 1.0
    widget.maps.regions_of.setCurrentIndex(1)
    entry = widget.maps.selected_entry()
    assert entry["scan"] == scan_b.name
    # scan B's map is shown with scan A's map of the same method (one per scan), named on the canvas
    assert entry["layer"].visible and entry["layer"].colorbar.visible
    assert scan_b.name in _map_view.text_overlay(viewer).text
    widget.maps.outlines.setChecked(True)  # the outlines layer is made when first shown, if there are regions
    outlines = _layers.result_layers(viewer, "compare", "regions")
    if widget.maps.regions:
        (regions,) = outlines
        assert regions.data.shape == scan_b.data.shape and viewer.layers.selection.active is not regions
        np.testing.assert_array_equal(regions.scale, scan_b.scale)
    else:
        assert outlines == []  # this tiny random model's maps are flat: nothing to outline

    # export: both scans' maps in their own file space, figures and a report
    out_parent = path_a.parent / "exports"
    widget.export_to(out_parent)
    qtbot.waitUntil(lambda: getattr(widget, "last_export", None) is not None, timeout=60000)
    assert errors == []
    folder = widget.last_export
    names = sorted(p.name for p in folder.iterdir())
    assert "report.json" in names and any(n.startswith("map_a_") for n in names) and any(n.startswith("map_b_") for n in names)
    import nibabel as nib

    map_b = nib.load(folder / next(n for n in names if n.startswith("map_b_")))
    np.testing.assert_allclose(map_b.affine, nib.load(path_b).affine, atol=1e-5)


def test_compare_refuses_the_same_layer_twice_with_one_line(make_napari_viewer, qtbot, siamese_files, errors):
    ckpt, path_a, _ = siamese_files
    viewer = make_napari_viewer()
    viewer.open(str(path_a), plugin="napari-bavis")
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Compare two scans")
    widget.model.set_checkpoint(ckpt)
    qtbot.waitUntil(lambda: not widget.model.inspecting, timeout=30000)
    widget.run()
    assert not widget.running
    assert errors == ["comparison: scan A and scan B are the same layer; choose two different scans"]


def test_a_brain_age_checkpoint_is_refused_by_the_compare_widget(make_napari_viewer, qtbot, tmp_path, errors):
    from test_analysis_widget import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "age.pt")
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Compare two scans")
    widget.model.set_checkpoint(ckpt)
    qtbot.waitUntil(lambda: not widget.model.inspecting, timeout=30000)
    assert len(errors) == 1 and "needs a Siamese model" in errors[0]
