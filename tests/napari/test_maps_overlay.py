"""Readable overlays (issue 12 item 5): one map shown at a time, its legend on the canvas, region
outlines that are made only when shown and never take the layer list's selection."""

import numpy as np
from test_analysis_widget import (  # noqa: F401  (fixtures and helpers)
    blob_scan, counted_analyze, dock, errors, map_layers, open_scan, run_and_wait, use_fake_model,
)

from napari_bavis import methods
from napari_bavis.napari import _layers, _map_view
from napari_bavis.regions import threshold_value

CHOSEN = ("gradcam", "gradcam++", "smoe*gradcam++")


def _run(viewer, qtbot, blob_scan):
    scan = open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    for method, box in widget.methods.items():
        box.setChecked(method in CHOSEN)
    run_and_wait(widget, qtbot)
    return scan, widget


def _by_method(viewer):
    return {layer.metadata["bavis_method"]: layer for layer in map_layers(viewer)}


def _visible(viewer):
    return sorted(layer.name for layer in map_layers(viewer) if layer.visible)


def _legend(viewer):
    overlay = _map_view.text_overlay(viewer)
    return overlay.text if overlay.visible else ""


def test_one_map_visible_at_a_time_with_its_legend(make_napari_viewer, qtbot, blob_scan, counted_analyze, errors):
    viewer = make_napari_viewer()
    _, widget = _run(viewer, qtbot, blob_scan)
    assert errors == []
    layers = _by_method(viewer)
    assert set(layers) == set(CHOSEN)
    best = methods.figure_method(CHOSEN)
    # after a run: the preferred map alone is visible, it is the active layer and the legend names it
    assert _visible(viewer) == [layers[best].name]
    assert viewer.layers.selection.active is layers[best]
    assert widget.maps.selected_entry()["method"] == best
    assert [m for m, layer in layers.items() if layer.colorbar.visible] == [best]
    cut = threshold_value(layers[best].data, 5.0, "top_percent")
    legend = _legend(viewer)
    assert legend.startswith(methods.title(best) + "\n") and f"cut {cut:.3f} (top 5 %)" in legend

    # choosing another map shows it and hides the others, which stay in the layer list
    index = [widget.maps.regions_of.itemText(i) for i in range(widget.maps.regions_of.count())].index(layers["gradcam"].name)
    widget.maps.regions_of.setCurrentIndex(index)
    assert _visible(viewer) == [layers["gradcam"].name]
    assert set(_by_method(viewer)) == set(CHOSEN)
    assert [m for m, layer in layers.items() if layer.colorbar.visible] == ["gradcam"]
    assert _legend(viewer).startswith("Grad-CAM\n") and methods.title(best) not in _legend(viewer)

    # the legend follows the threshold
    widget.maps.set_threshold(0.6, "value")
    assert "cut 0.600 (map value)" in _legend(viewer)
    widget.maps.set_threshold(10.0, "top_percent")
    cut = threshold_value(layers["gradcam"].data, 10.0, "top_percent")
    assert f"cut {cut:.3f} (top 10 %)" in _legend(viewer)

    # the user's own eye in the layer list is not fought
    layers["gradcam++"].visible = True
    qtbot.wait(50)
    widget.maps.set_threshold(0.5, "value")
    widget.maps.update_regions()
    assert _visible(viewer) == sorted([layers["gradcam"].name, layers["gradcam++"].name])

    # a map selected in the layer list becomes the selector's choice; visibility stays the user's
    viewer.layers.selection.active = layers[best]
    assert widget.maps.selected_entry()["method"] == best
    assert _legend(viewer).startswith(methods.title(best) + "\n") and layers[best].colorbar.visible
    assert not layers["gradcam"].colorbar.visible
    assert _visible(viewer) == sorted([layers["gradcam"].name, layers["gradcam++"].name])

    # one colour bar on the canvas, whichever panel drew the other (the compare widget's map here)
    other = viewer.add_image(layers[best].data.copy(), name="other panel's map")
    other.colorbar.visible = True
    widget.maps.regions_of.setCurrentIndex(index)
    assert not other.colorbar.visible and layers["gradcam"].colorbar.visible
    viewer.layers.remove(other)

    # clearing the results takes the legend away
    widget.clear_results()
    assert _legend(viewer) == "" and map_layers(viewer) == []


def test_region_outlines_are_lazy_and_never_take_the_selection(make_napari_viewer, qtbot, blob_scan, counted_analyze,
                                                                errors):
    viewer = make_napari_viewer()
    scan, widget = _run(viewer, qtbot, blob_scan)
    assert widget.maps.regions, "the blob map has an activated region"
    assert _layers.result_layers(viewer, "analysis", "regions") == []  # not made until shown
    shown = widget.maps.selected_entry()["layer"]
    assert viewer.layers.selection.active is shown

    # a click on a row: the view moves there, the outlines appear, the selection stays on the map
    widget.maps.table.cellClicked.emit(0, 0)
    (outlines,) = _layers.result_layers(viewer, "analysis", "regions")
    assert outlines.visible and widget.maps.outlines.isChecked()
    assert outlines.contour >= 1 and outlines.opacity >= 0.5  # outlines, not a fill hiding the map
    rgba = np.asarray(outlines.colormap.map(np.array([0, 1, 2])))
    assert rgba[0, 3] == 0 and np.allclose(rgba[1], rgba[2]) and rgba[1, 1] > 0.9  # one bright green for all
    assert viewer.layers.selection.active is shown and outlines not in viewer.layers.selection
    x, y, z = widget.maps.regions[0].centroid_ras_mm
    assert abs(viewer.dims.point[0] - z) <= scan.scale[0]
    assert int(outlines.data.max()) == len(widget.maps.regions)

    # the scan selected: a threshold change updates the outlines, the scan stays the active layer
    viewer.layers.selection.active = scan
    widget.maps.set_threshold(0.3, "value")
    widget.maps.update_regions()
    assert viewer.layers.selection.active is scan and set(viewer.layers.selection) == {scan}
    assert _layers.result_layers(viewer, "analysis", "regions") == [outlines]
    assert int(outlines.data.max()) == len(widget.maps.regions)

    # the layer list's eye and the checkbox agree
    outlines.visible = False
    assert not widget.maps.outlines.isChecked()
    widget.maps.outlines.setChecked(True)
    assert outlines.visible and viewer.layers.selection.active is scan

    # no regions (a cut above the whole map): no outlines layer, an empty table
    widget.maps.set_threshold(0.999, "value")
    widget.maps.update_regions()
    assert widget.maps.table.rowCount() == 0 and _layers.result_layers(viewer, "analysis", "regions") == []


def test_outlines_follow_the_selector_and_never_take_the_selection(make_napari_viewer, qtbot, blob_scan, counted_analyze,
                                                             errors):
    viewer = make_napari_viewer()
    scan, widget = _run(viewer, qtbot, blob_scan)
    viewer.layers.selection.active = scan
    widget.maps.outlines.setChecked(True)  # the layer is made now
    (outlines,) = _layers.result_layers(viewer, "analysis", "regions")
    assert viewer.layers.selection.active is scan and not outlines.editable
    # picking another map in the selector selects that map (so the layer controls act on it), never the outlines
    widget.maps.regions_of.setCurrentIndex((widget.maps.regions_of.currentIndex() + 1) % widget.maps.regions_of.count())
    chosen = widget.maps.selected_entry()
    assert viewer.layers.selection.active is chosen["layer"] and outlines not in viewer.layers.selection
    assert _layers.result_layers(viewer, "analysis", "regions") == [outlines]
    assert outlines.metadata["bavis_method"] == chosen["method"] and outlines.visible


def test_each_map_is_cut_once_per_threshold(make_napari_viewer, qtbot, blob_scan, counted_analyze, errors,
                                            monkeypatch):
    """The colormap, the "cut at" line, the legend and the regions all ask for a map's cut: a top-k %
    cut of a 1 mm map is a percentile, so it is computed once per map and threshold (and not at all
    when the worker sent it)."""
    from napari_bavis.napari import _maps_panel

    viewer = make_napari_viewer()
    _, widget = _run(viewer, qtbot, blob_scan)
    calls = []
    real = _maps_panel.threshold_value
    monkeypatch.setattr(_maps_panel, "threshold_value", lambda *a: calls.append(a[1:]) or real(*a))
    entries = list(widget.maps._entries)
    widget.maps.set_maps(entries)  # a fresh panel state over the same maps: cuts remembered
    assert calls == []
    widget.maps.set_threshold(10.0, "top_percent")
    widget.maps.update_regions()
    assert sorted(calls) == [(10.0, "top_percent")] * len(entries)
    cut = threshold_value(entries[0]["values"], 10.0, "top_percent")
    assert widget.maps.cutoff(entries[0]["values"]) == cut
    # a cut handed over (the worker's) is used as it is
    widget.maps.remember_cut(entries[0]["values"], 20.0, "top_percent", 0.123)
    widget.maps.set_threshold(20.0, "top_percent")
    assert widget.maps.cutoff(entries[0]["values"]) == 0.123


def test_recolouring_only_hidden_maps_paints_nothing_and_a_shown_map_is_repainted(
        make_napari_viewer, qtbot, blob_scan, counted_analyze, errors, canvas_draws):
    """When results are added the maps are recoloured while all are hidden: that costs no paint of
    the canvas (no pixel changes); recolouring a shown map repaints it."""
    viewer = make_napari_viewer(show=True)
    _, widget = _run(viewer, qtbot, blob_scan)
    layers = list(_by_method(viewer).values())
    shown = [layer for layer in layers if layer.visible]
    for layer in shown:
        layer.visible = False
    draws = canvas_draws(viewer)
    before = [layer.colormap.name for layer in layers]
    widget.maps.threshold.blockSignals(True)  # the recolouring alone (the legend's text would repaint)
    widget.maps.threshold.setValue(9.0)
    widget.maps._recolour()
    qtbot.wait(150)
    assert draws == [] and [layer.colormap.name for layer in layers] != before  # recoloured, not painted
    shown[0].visible = True
    qtbot.waitUntil(lambda: len(draws) >= 1, timeout=2000)
    draws.clear()
    widget.maps.threshold.setValue(3.0)
    widget.maps._recolour()
    widget.maps.threshold.blockSignals(False)
    qtbot.waitUntil(lambda: len(draws) >= 1, timeout=2000)  # a shown map recoloured is repainted
