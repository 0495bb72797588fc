"""The analysis dock widget in a real viewer (run under xvfb-run; CPU; tiny checkpoint, small scan)."""

import json
import threading
import time

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import models, pipeline
from napari_bavis.errors import Cancelled
from napari_bavis.grid import Grid
from napari_bavis.napari import _analysis_widget, _layers, _notify
from napari_bavis.samples import mni_t1, to_scanner_space

#: A 6 mm model grid over the MNI box keeps the model's time negligible.
TINY_GRID = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 6.0)
TINY_KWARGS = {"channels": [2, 2, 2, 2, 2], "final_channels": 4, "head": [4], "use_sex": False, "output_bias": 50.0}
FAST_PREPROCESSING = {"bias_correction": False, "brain_extraction": True, "registration": "affine",
                      "segmentation": False, "modulation": False, "smoothing_fwhm_mm": 0.0,
                      "intensity_normalisation": "zscore"}


def tiny_checkpoint(path, **card_fields):
    model = models.build("ba3d", **TINY_KWARGS)
    card = models.default_card(
        "ba3d", name="tiny", grid=TINY_GRID.to_dict(), input_kind="t1", training_age_range=[20, 90],
        architecture_kwargs=TINY_KWARGS, preprocessing=FAST_PREPROCESSING, **card_fields,
    )
    models.save_checkpoint(path, model, card)
    return path


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    ckpt = tiny_checkpoint(folder / "tiny.pt")
    scan = folder / "subject.nii.gz"  # an LPS scanner pose at 4 mm: small, but a real registration
    nib.save(to_scanner_space(mni_t1(2), rotation_deg=(4, 0, 3), translation_mm=(3, -5, 6), voxel_size=(4, 4, 4)), scan)
    return ckpt, scan


@pytest.fixture
def errors(monkeypatch):
    """Every error notification the widgets raise, instead of napari's dialogs."""
    shown = []
    monkeypatch.setattr(_notify, "show_error", shown.append)
    monkeypatch.setattr(_notify, "show_warning", lambda *_: None)
    monkeypatch.setattr(_notify, "show_info", lambda *_: None)
    return shown


def dock(viewer, qtbot, ckpt=None):
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain age analysis")
    if ckpt is not None:
        widget.model.set_checkpoint(ckpt)
        qtbot.waitUntil(lambda: not widget.model.inspecting, timeout=30000)
    return widget


def use_fake_model(widget):
    """Select a model name only the monkeypatched pipeline.analyze knows (no card to read)."""
    widget.model.combo.blockSignals(True)
    widget.model.combo.insertItem(0, "fake")
    widget.model.combo.setCurrentText("fake")
    widget.model.combo.blockSignals(False)


def open_scan(viewer, path):
    (layer,) = viewer.open(str(path), plugin="napari-bavis")
    return layer


def run_and_wait(widget, qtbot, timeout=60000):
    widget.run()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def map_layers(viewer):
    return _layers.result_layers(viewer, "analysis", "map")


def test_end_to_end_run_puts_aligned_maps_and_results(make_napari_viewer, qtbot, tiny_files, errors):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    scan = open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, ckpt)
    assert "tiny" in widget.model.card_text.text() and "Training ages: 20–90" in widget.model.card_text.text()
    assert widget.image.layer().name == scan.name
    widget.age.setValue(95.0)  # outside the card's training range
    for method, box in widget.methods.items():
        box.setChecked(method in ("gradcam", "smoe"))
    run_and_wait(widget, qtbot)
    assert errors == []

    text = widget.results.toPlainText()
    pred = widget.analysis.prediction
    assert f"Brain age: {pred.brain_age:.1f} years" in text
    assert "Chronological age: 95.0 years" in text
    assert f"{pred.brain_age - 95.0:+.1f} years (raw)" in text
    assert "outside the training range" in text
    assert "Model: tiny" in text and "Research use only" in text

    maps = map_layers(viewer)
    assert sorted(layer.name for layer in maps) == sorted([f"{scan.name} · Grad-CAM · tiny", f"{scan.name} · SMOE · tiny"])
    for layer in maps:
        np.testing.assert_array_equal(layer.scale, scan.scale)
        np.testing.assert_array_equal(layer.translate, scan.translate)
        assert tuple(layer.axis_labels) == tuple(scan.axis_labels)
        assert tuple(str(u) for u in layer.units) == tuple(str(u) for u in scan.units)
        assert layer.data.shape == scan.data.shape
        src, mine = scan.metadata["bavis_source"], layer.metadata["bavis_source"]
        np.testing.assert_array_equal(mine["source_affine"], src["source_affine"])
        assert mine["path"] == src["path"]
        assert layer.blending == "translucent" and tuple(layer.contrast_limits) == (0.0, 1.0)
    # the regions table matches the core's regions of the selected map at the shown threshold
    entry = widget.maps.selected_entry()
    _, expected = widget.analysis.regions(entry["method"], widget.maps.threshold.value(), widget.maps.mode_key(),
                                          widget.maps.min_size.value())
    assert [r.volume_mm3 for r in widget.maps.regions] == [r.volume_mm3 for r in expected]
    assert widget.maps.table.rowCount() == len(expected)
    assert _layers.result_layers(viewer, "analysis", "regions") == []  # the outlines layer is made when shown
    widget.maps.outlines.setChecked(True)
    outlines = _layers.result_layers(viewer, "analysis", "regions")
    assert len(outlines) == (1 if expected else 0)  # ... and only when there are regions to outline
    for regions_layer in outlines:
        assert regions_layer.data.max() == len(expected)
        np.testing.assert_array_equal(regions_layer.scale, scan.scale)

    # QC layers on request, in RAS millimetres
    widget.qc_registration.setChecked(True)
    qc_names = {layer.metadata["bavis_qc"] for layer in _layers.result_layers(viewer, "analysis", "qc")}
    assert qc_names == {"registration check"}  # one grey checkerboard of the registered scan and the template
    (board,) = _layers.result_layers(viewer, "analysis", "qc")
    assert board.colormap.name == "gray" and float(board.data.min()) >= 0.0 and float(board.data.max()) <= 1.0
    widget.qc_mask.setChecked(True)
    (mask,) = [layer for layer in _layers.result_layers(viewer, "analysis", "qc") if layer.metadata["bavis_qc"] == "brain mask"]
    assert mask.data.shape == scan.data.shape
    assert mask.contour == _layers.MASK_CONTOUR  # an outline, not a fill that hides the scan

    # a click on the first region moves the view to its centroid (RAS x, y, z -> world S, A, R)
    if widget.maps.regions:
        widget.maps.table.cellClicked.emit(0, 0)
        x, y, z = widget.maps.regions[0].centroid_ras_mm
        point = viewer.dims.point
        step = np.asarray(scan.scale)
        assert abs(point[0] - z) <= step[0] and abs(point[1] - y) <= step[1] and abs(point[2] - x) <= step[2]

    # the map layers save through the plugin's writer onto the scan file's own grid
    out = scan_path.parent / "map_saved.nii.gz"
    maps[0].save(str(out), plugin="napari-bavis")
    saved, original = nib.load(out), nib.load(scan_path)
    np.testing.assert_allclose(saved.affine, original.affine, atol=1e-5)
    assert saved.shape == original.shape


def test_settings_persist_between_widgets(make_napari_viewer, qtbot, tiny_files, errors):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    widget = dock(viewer, qtbot, ckpt)
    widget.model.device.setCurrentText("cpu")
    assert widget.model.cpu_warning.isVisibleTo(widget)
    widget.methods["gradcam"].setChecked(True)
    assert (widget.maps.mode_key(), widget.maps.threshold.value()) == ("top_percent", 5.0)  # readable default
    widget.maps.set_threshold(0.45, "value")
    again = _analysis_widget.AnalysisWidget(viewer)
    qtbot.waitUntil(lambda: not again.model.inspecting, timeout=30000)
    assert again.model.model() == str(ckpt)  # the last checkpoint comes back
    assert again.model.device.currentText() == "cpu"
    assert again.methods["gradcam"].isChecked()
    assert again.maps.threshold.value() == pytest.approx(0.45) and again.maps.mode_key() == "value"


# --- threshold behaviour, with a counted fake of pipeline.analyze -------------------------------

def _fake_analysis(scan, values: dict):
    return pipeline.Analysis(
        scan=scan, card=models.default_card("ba3d", name="fake"),
        prediction=None, maps=values, maps_model={}, qc={}, timings={}, record={}, device="cpu",
    )


@pytest.fixture
def blob_scan(tmp_path):
    """A bright rectangular phantom in RAS storage at 2 mm, with one known map blob inside."""
    data = np.zeros((40, 48, 36), np.float32)  # (R, A, S) storage
    data[5:35, 6:42, 4:32] = 100.0
    path = tmp_path / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def _blob_map(shape):
    """A smooth blob on the display grid: 1 at the centre falling to 0; values 0.2-0.8 in a ring."""
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = [n / 2 for n in shape]
    r = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
    return np.clip(1.0 - r / 12.0, 0.0, 1.0).astype(np.float32)


@pytest.fixture
def counted_analyze(monkeypatch):
    calls = []

    def fake(scan, progress=None, cancel=None, methods=("gradcam++",), **_):
        calls.append(methods)
        for i, step in enumerate(("load scan", "maps")):
            if progress:
                progress(step, i, 2)
        return _fake_analysis(scan, {m: _blob_map(scan.data.shape) for m in methods})

    monkeypatch.setattr(pipeline, "analyze", fake)
    monkeypatch.setattr(_analysis_widget._RunWidget, "worker_kind", "thread")  # the patch lives in this process
    return calls


def test_threshold_change_recolours_without_recomputing(make_napari_viewer, qtbot, blob_scan, counted_analyze, errors):
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    for method, box in widget.methods.items():
        box.setChecked(method == "gradcam++")
    run_and_wait(widget, qtbot)
    assert len(counted_analyze) == 1
    (layer,) = map_layers(viewer)
    values = layer.data

    timings = []
    for threshold in (0.5, 0.7, 0.2):
        start = time.perf_counter()
        widget.maps.set_threshold(threshold, "value")
        timings.append(time.perf_counter() - start)
        rgba = layer.colormap.map(np.array([threshold - 0.01, threshold + 0.01, 0.0]))
        assert rgba[0, 3] == 0.0 and rgba[2, 3] == 0.0  # below the cutoff: fully transparent
        assert rgba[1, 3] == 1.0  # above it: opaque (the layer's opacity does the rest)
        widget.maps.update_regions()
        _, expected = widget.analysis.regions("gradcam++", threshold, "value", widget.maps.min_size.value())
        assert [r.volume_mm3 for r in widget.maps.regions] == [r.volume_mm3 for r in expected]
    assert len(counted_analyze) == 1  # no model call for any of it
    assert layer.data is values

    widget.maps.set_threshold(5.0, "top_percent")
    cutoff = float(np.percentile(values[values > 0], 95.0))
    assert layer.colormap.map(np.array([cutoff - 0.01]))[0, 3] == 0.0
    assert layer.colormap.map(np.array([min(cutoff + 0.02, 1.0)]))[0, 3] == 1.0
    assert len(counted_analyze) == 1
    print(f"\nthreshold update (colormap swap, 1 map): max {1000 * max(timings):.1f} ms")
    start = time.perf_counter()
    widget.maps.update_regions()
    print(f"regions update (components + labels layer + table): {1000 * (time.perf_counter() - start):.1f} ms")


def test_below_threshold_pixels_look_exactly_like_the_scan(make_napari_viewer, qtbot, blob_scan, counted_analyze, errors):
    viewer = make_napari_viewer(show=True)  # offscreen canvases render black under Xvfb
    scan = open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    for method, box in widget.methods.items():
        box.setChecked(method == "gradcam++")
    run_and_wait(widget, qtbot)
    (layer,) = map_layers(viewer)
    widget.maps.set_threshold(0.5, "value")
    widget.maps.update_regions()
    widget.parent().setFloating(True)  # the canvas keeps one size while the dock's texts change
    layer.colorbar.visible = False  # the legend (colour bar, text) is drawn on the canvas; this compares the scene
    viewer.canvas.overlays["text"].visible = False
    qtbot.wait(50)
    middle = scan.data.shape[0] // 2
    viewer.dims.set_point(0, scan.translate[0] + middle * scan.scale[0])
    viewer.reset_view()

    layer.visible = False
    without = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    layer.visible = True
    with_map = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    changed = np.abs(with_map - without).max(axis=2) > 0
    # the screen footprint of the activated disc, from the same slice rendered as a mask
    disc = layer.data[middle] > 0.5
    assert disc.sum() > 20
    layer.visible = False
    mask_layer = viewer.add_image(disc.astype(np.float32), scale=scan.scale[1:], translate=scan.translate[1:],
                                  colormap="gray", contrast_limits=(0, 1), blending="additive")
    scan.visible = False
    footprint = viewer.screenshot(canvas_only=True, flash=False)[..., :3].max(axis=2) > 0
    viewer.layers.remove(mask_layer)
    scan.visible = True
    layer.visible = True
    assert changed.any()  # the map is drawn ...
    outside = ~_dilate(footprint, 3)
    assert not changed[outside].any(), f"{int(changed[outside].sum())} pixels changed outside the activated region"
    assert changed[footprint].mean() > 0.5  # ... and only where the map is above the threshold


def _dilate(mask, n):
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=n)


def test_rerun_replaces_layers_and_clear_removes_them(make_napari_viewer, qtbot, blob_scan, counted_analyze, errors):
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    run_and_wait(widget, qtbot)
    first = sorted(layer.name for layer in viewer.layers)
    run_and_wait(widget, qtbot)
    assert sorted(layer.name for layer in viewer.layers) == first
    assert len(counted_analyze) == 2
    widget.clear_button.click()
    assert [layer.name for layer in viewer.layers] == ["phantom"]


def test_cancel_mid_run_adds_no_layers(make_napari_viewer, qtbot, blob_scan, monkeypatch, errors):
    started, release = threading.Event(), threading.Event()

    def slow(scan, progress=None, cancel=None, **_):
        progress("preprocess: registration", 0, 3)
        started.set()
        release.wait(10)
        if cancel.is_set():
            raise Cancelled("cancelled by the user")
        return _fake_analysis(scan, {"gradcam++": _blob_map(scan.data.shape)})

    monkeypatch.setattr(pipeline, "analyze", slow)
    monkeypatch.setattr(_analysis_widget._RunWidget, "worker_kind", "thread")
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    widget.run()
    assert started.wait(10)
    qtbot.waitUntil(lambda: widget.step_label.text() == "preprocess: registration", timeout=5000)
    assert not widget.image.isEnabled() and widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    release.set()
    qtbot.waitUntil(lambda: not widget.running, timeout=10000)
    assert [layer.name for layer in viewer.layers] == ["phantom"]
    assert widget.analysis is None and errors == []
    assert widget.image.isEnabled() and widget.run_button.isEnabled()


def test_cancel_with_the_real_pipeline_stops_between_steps(make_napari_viewer, qtbot, tiny_files, errors):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, ckpt)
    widget.run()
    qtbot.waitUntil(lambda: widget.step_label.text().startswith("preprocess"), timeout=30000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert widget.step_label.text() == "cancelled"
    assert _layers.result_layers(viewer, "analysis") == [] and errors == []


def test_bad_checkpoint_is_one_notification_not_a_traceback(make_napari_viewer, qtbot, tmp_path, tiny_files, errors):
    _, scan_path = tiny_files
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    viewer = make_napari_viewer()
    open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, bad)  # reading its card already tells the user
    assert len(errors) == 1 and "\n" not in errors[0] and "broken.pt" in errors[0]
    assert "could not be read" in widget.model.card_text.text()
    run_and_wait(widget, qtbot)  # running with it anyway: the same one line, inputs back on
    assert len(errors) == 2 and "\n" not in errors[1] and "Traceback" not in errors[1]
    assert widget.run_button.isEnabled() and widget.image.isEnabled()
    assert _layers.result_layers(viewer, "analysis") == []


def test_unexpected_error_is_one_line(make_napari_viewer, qtbot, blob_scan, monkeypatch, errors):
    def broken(*_, **__):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(pipeline, "analyze", broken)
    monkeypatch.setattr(_analysis_widget._RunWidget, "worker_kind", "thread")
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    run_and_wait(widget, qtbot)
    assert errors == ["analysis failed unexpectedly: ZeroDivisionError: float division by zero"]


def test_event_loop_keeps_running_during_a_real_run(make_napari_viewer, qtbot, tiny_files, errors):
    from qtpy.QtCore import QTimer

    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, ckpt)
    ticks, computed = [], []
    widget._relay.step.connect(lambda _, step, *__: computed.append(time.perf_counter()) if step == "done" else None)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(2000)  # the busy machine alone, no run: the baseline
    idle = np.diff(np.array(ticks))
    ticks.clear()
    start = time.perf_counter()
    run_and_wait(widget, qtbot)
    timer.stop()
    assert errors == [] and widget.analysis is not None and computed
    ticks = np.array([start, *ticks])
    compute = np.diff(ticks[ticks <= computed[0] + 0.001])
    display = np.diff(ticks[ticks >= computed[0]])
    print(f"\nrun {time.perf_counter() - start:.2f} s; while computing ({computed[0] - start:.2f} s, {compute.size} ticks): "
          f"max event-loop stall {1000 * compute.max():.0f} ms, p99 {1000 * np.percentile(compute, 99):.0f} ms; "
          f"while adding {len(map_layers(viewer))} map layers + regions: max stall "
          f"{1000 * display.max() if display.size else float('nan'):.0f} ms")
    assert compute.size > 20
    assert compute.max() < max(0.2, 2 * idle.max())  # a worker process; the machine's own stalls aside


def test_export_writes_maps_figure_and_report(make_napari_viewer, qtbot, tiny_files, tmp_path, errors):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, ckpt)
    run_and_wait(widget, qtbot)
    widget.maps.set_threshold(0.4, "value")
    widget.export_to(tmp_path / "exports")
    qtbot.waitUntil(lambda: not widget.exporting, timeout=60000)
    assert errors == []
    folder = widget.last_export
    assert folder.parent == tmp_path / "exports"
    report = json.loads((folder / "report.json").read_text())
    assert report["threshold"] == {"value": 0.4, "mode": "value"}
    assert report["brain_age"] == pytest.approx(widget.analysis.prediction.brain_age)
    assert (folder / "figure.png").stat().st_size > 1000
    for method, name in report["maps"].items():
        img = nib.load(folder / name)
        np.testing.assert_allclose(img.affine, nib.load(scan_path).affine, atol=1e-5)
    assert set(report["maps"]) == set(pipeline.DEFAULT_METHODS)
    from napari_bavis import settings

    assert settings.load()["export_dir"] == str(tmp_path / "exports")


# --- what the result says: model used, brain age ± uncertainty, every warning once ---------------

def test_result_text_shows_uncertainty_the_model_used_and_each_warning_once(blob_scan):
    from napari_bavis.io import load_scan
    from napari_bavis.models.inference import AgePrediction

    card = models.default_card("ba3d", name="real", version="1.2.0")
    qc = "The head is 1.92 times the template's volume: check the registration."
    out_of_range = "brain age 61.3 is outside the model's training range 19-55 years: it is extrapolated"
    analysis = pipeline.Analysis(
        scan=load_scan(blob_scan), card=card, maps={}, maps_model={}, qc={}, timings={}, record={}, device="cpu",
        prediction=AgePrediction(brain_age=61.26, uncertainty=1.14, out_of_range_warning=out_of_range),
        notes=[qc, out_of_range, qc],
    )
    text = _analysis_widget.result_text(analysis)
    assert "Brain age: 61.3 ± 1.1 years" in text
    assert text.count(qc) == 1 and text.count(out_of_range) == 1
    assert "Model: real 1.2.0 (ba3d) on cpu" in text
    analysis.prediction.uncertainty = None
    text = _analysis_widget.result_text(analysis)
    assert "Brain age: 61.3 years" in text and "±" not in text


def test_the_widget_starts_on_the_default_real_brain_model(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = dock(viewer, qtbot)
    qtbot.waitUntil(lambda: not widget.model.inspecting, timeout=30000)
    installed = pipeline.bundled_models()
    if pipeline.DEFAULT_MODEL in installed:
        assert widget.model.model() == pipeline.DEFAULT_MODEL
    else:  # until ds002748.pt is bundled: the first installed brain-age model, never a Siamese one
        assert widget.model.model() == ("demo" if "demo" in installed else None)
    assert pipeline.DEFAULT_MODEL in widget.model.combo.toolTip()
