"""Compare results side by side (napari grid mode, one cell per scan) and every note of the Comparison
in the widget's text (run under xvfb-run; the pipeline is replaced by a fake, in a thread)."""

import numpy as np
import pytest

from napari_bavis import models, pipeline
from napari_bavis.models.inference import Similarity
from napari_bavis.napari import _compare_widget, _layers, _notify
from napari_bavis.napari._side_by_side import _grid as grid  # viewer.canvas.grid (viewer.grid is deprecated)
from napari_bavis.napari._run_widget import RunWidget

NOTES = ["scan A: 25 y is outside the model's training ages (65–85 y)", "scan B: weak registration (r = 0.41)"]


@pytest.fixture
def fake_compare(monkeypatch):
    calls = []

    def fake(scan_a, scan_b, progress=None, cancel=None, methods=("gradcam++",), **kwargs):
        calls.append(kwargs)
        def blob(scan):
            return {m: np.linspace(0, 1, scan.data.size, dtype=np.float32).reshape(scan.data.shape) for m in methods}

        return pipeline.Comparison(
            scan_a=scan_a, scan_b=scan_b, card=models.default_card("siamese3d", name="fake-siamese"),
            similarity=Similarity(0.8, 0.63), maps_a=blob(scan_a), maps_b=blob(scan_b), timings={}, record={},
            device="cpu", notes=list(NOTES) + [NOTES[0]])

    monkeypatch.setattr(pipeline, "compare", fake)
    monkeypatch.setattr(RunWidget, "worker_kind", "thread")  # the patch lives in this process
    for name in ("show_error", "show_warning", "show_info"):
        monkeypatch.setattr(_notify, name, lambda *_: None)
    return calls


def test_comparison_side_by_side_with_its_notes(make_napari_viewer, qtbot, fake_compare):
    viewer = make_napari_viewer()
    other = viewer.add_image(np.ones((10, 12, 14), np.float32), name="other scan")
    a = viewer.add_image(np.random.default_rng(0).random((10, 12, 14)).astype(np.float32), name="A")
    b = viewer.add_image(np.random.default_rng(1).random((10, 12, 14)).astype(np.float32), name="B")
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Compare two scans")
    widget.model.combo.blockSignals(True)
    widget.model.combo.insertItem(0, "fake")  # a name only the fake pipeline knows
    widget.model.combo.setCurrentText("fake")
    widget.model.combo.blockSignals(False)
    widget.image_a.setCurrentText("A")
    widget.image_b.setCurrentText("B")
    for method, box in widget.methods.items():
        box.setChecked(method in ("gradcam++", "smoe"))
    widget.age_a.setValue(25.0)  # scan B's age not given
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert fake_compare[-1]["age_a"] == 25.0 and fake_compare[-1]["age_b"] is None  # the range check's input

    text = widget.results.toPlainText()
    for note in NOTES:
        assert text.count(f"⚠ {note}") == 1  # every note, each once
    # grid mode: the bottom two blocks of the layer list are [A, A's maps] and [B, B's maps]
    assert grid(viewer).enabled and grid(viewer).stride == 3
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "A" and all(n.startswith("A · ") for n in names[1:3])
    assert names[3] == "B" and all(n.startswith("B · ") for n in names[4:6])
    assert grid(viewer).actual_shape(viewer.layers) == (1, 2)  # two cells: the other scan is hidden meanwhile
    assert not other.visible
    assert grid(viewer).position(names.index("A"), viewer.layers) != grid(viewer).position(names.index("B"), viewer.layers)

    widget.side_by_side.setChecked(False)  # one view again, the other scan back
    assert not grid(viewer).enabled and other.visible
    widget.side_by_side.setChecked(True)
    assert grid(viewer).enabled and not other.visible
    widget.clear_results()
    assert not grid(viewer).enabled and other.visible
    assert _layers.result_layers(viewer, "compare") == []
    assert a in viewer.layers and b in viewer.layers


def test_comparison_text_lists_notes_and_warnings_once():
    comparison = type("C", (), {})()
    comparison.similarity = Similarity(0.5, 1.0, "healthy", "AD-like", {"healthy": 0.9}, {"AD-like": 0.7})
    comparison.card = models.default_card("siamese3d", name="m")
    comparison.device = "cpu"
    comparison.notes = [NOTES[0]]
    comparison.warnings = [NOTES[0], NOTES[1]]
    text = _compare_widget.comparison_text(comparison, ("A", "B"))
    assert text.count("⚠") == 2 and NOTES[1] in text
    assert "A: nearest reference healthy (healthy 0.90)" in text
