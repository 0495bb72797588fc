"""The shown map's colour bar is made while its map is hidden (``prepare_colour_bar``), so that
making napari's overlay visual and the bar's first paint fall in two event-loop turns (issue 13),
and the prepared bar is the one drawn once the map and its bar are shown."""

import numpy as np

from napari_bavis.napari import _layers, _map_view


def _canvas(viewer):
    return viewer.window._qt_viewer.canvas


def _hidden_map(viewer):
    data = np.zeros((20, 30, 30), np.float32)
    data[:, 5:25, 5:25] = 1.0
    layer = _layers.new_layer(data, {"name": "map", "colormap": "red", "contrast_limits": (0.0, 1.0),
                                     "visible": False, "blending": "additive"})
    _layers.add_quietly(viewer, layer)
    return layer


def test_a_hidden_maps_colour_bar_is_made_without_a_paint_and_drawn_once_shown(make_napari_viewer, qtbot, canvas_draws):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((20, 30, 30), np.float32), name="scan", contrast_limits=(0, 1))
    layer = _hidden_map(viewer)
    draws = canvas_draws(viewer)
    entry = {"layer": layer, "method": "gradcam", "scan": "scan"}

    _map_view.prepare_colour_bar(viewer, entry)
    qtbot.wait(150)
    made = _canvas(viewer)._layer_overlay_to_visual[layer][layer.colorbar]
    assert draws == [] and not layer.colorbar.visible and not made.node.visible
    assert layer.colorbar.position == _map_view.LEGEND_POSITION

    no_bar = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    layer.visible = True
    _map_view.show_colour_bar(viewer, entry)
    qtbot.waitUntil(lambda: len(draws) >= 1, timeout=2000)
    qtbot.wait(50)
    assert _canvas(viewer)._layer_overlay_to_visual[layer][layer.colorbar] is made  # the prepared visual
    assert made.node.visible
    shown = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    assert np.abs(shown - no_bar).sum(axis=-1).astype(bool).sum() > 500  # the map and its bar are drawn


def test_a_shown_maps_colour_bar_is_left_as_it_is(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = _hidden_map(viewer)
    layer.visible = True
    _map_view.prepare_colour_bar(viewer, {"layer": layer, "method": "gradcam", "scan": "scan"})
    assert not layer.colorbar.visible and layer.colorbar not in _canvas(viewer)._layer_overlay_to_visual[layer]
