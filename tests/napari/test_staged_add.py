"""A layer added in turns (``StagedAdd``) behaves like one napari added in one call (issue 13):
drawn where napari draws it, its controls shown when it is selected, removed cleanly, and each
turn costs a fraction of the one-call add."""

import time

import numpy as np

from napari_bavis.napari import _layers
from napari_bavis.napari._staged_add import StagedAdd


def _shown(viewer):
    return viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)


def _map(name, visible=True, value=1.0):
    data = np.zeros((20, 30, 30), np.float32)
    data[:, 5:25, 5:25] = value
    return _layers.new_layer(data, {"name": name, "colormap": "red", "contrast_limits": (0.0, 1.0),
                                    "visible": visible, "blending": "additive"})


def test_a_staged_layer_is_drawn_selected_and_removed_as_napari_would(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)  # offscreen canvases render black under Xvfb
    viewer.add_image(np.zeros((20, 30, 30), np.float32), name="scan", contrast_limits=(0, 1))
    qtbot.wait(50)
    before = _shown(viewer)
    qt_viewer = viewer.window._qt_viewer

    staged = StagedAdd(viewer, _map("map"))
    staged.build_visual()
    staged.build_controls()
    assert staged.layer not in viewer.layers  # nothing joins the viewer before insert
    layer = staged.insert()
    assert staged.staged and layer in viewer.layers
    assert qt_viewer.canvas.layer_to_visual[layer] is staged.visual
    assert qt_viewer.controls.widgets[layer] is staged.controls
    assert viewer.layers.selection.active is not layer  # added quietly: the user's selection stays
    qtbot.wait(50)
    drawn = _shown(viewer)
    assert drawn[..., 0].max() > 200 and before[..., 0].max() < 10  # the red square is on the canvas

    viewer.layers.selection.active = layer
    qtbot.wait(20)
    assert qt_viewer.controls.currentWidget() is staged.controls
    layer.visible = False
    qtbot.wait(50)
    assert _shown(viewer)[..., 0].max() < 10

    viewer.layers.remove(layer)
    qtbot.wait(20)
    assert layer not in qt_viewer.canvas.layer_to_visual and layer not in qt_viewer.controls.widgets


def test_a_hidden_staged_layer_made_visible_later_shows_its_data(make_napari_viewer, qtbot):
    """The maps are added hidden and shown by the maps panel later: the prepared visual must take
    the slice napari makes then."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((20, 30, 30), np.float32), name="scan", contrast_limits=(0, 1))
    staged = StagedAdd(viewer, _map("hidden map", visible=False))
    staged.build_visual()
    qtbot.wait(10)
    staged.build_controls()
    layer = staged.insert()
    qtbot.wait(50)
    assert _shown(viewer)[..., 0].max() < 10
    layer.visible = True
    qtbot.wait(50)
    assert _shown(viewer)[..., 0].max() > 200


def test_insert_alone_builds_what_is_missing_and_a_viewer_without_window_falls_back(make_napari_viewer):
    viewer = make_napari_viewer()
    staged = StagedAdd(viewer, _map("unprepared"))
    layer = staged.insert()  # no build_* turns: insert builds both, as napari would
    assert staged.staged and layer in viewer.window._qt_viewer.controls.widgets

    from napari.components import ViewerModel

    model = ViewerModel()  # no Qt window: the plain add
    fallback = StagedAdd(model, _map("plain"))
    fallback.build_visual()
    fallback.build_controls()
    assert fallback.parts is None and fallback.visual is None
    assert fallback.insert() in model.layers and not fallback.staged


def test_each_turn_costs_less_than_the_one_call_add(make_napari_viewer, qtbot):
    """The point of staging: the longest turn is well under napari's one-call add of the same layer
    (CPU time of this thread, medians of 3, so a busy machine moves both sides alike)."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((60, 120, 120), np.float32), name="scan", contrast_limits=(0, 1))

    def cpu(call):
        start = time.thread_time()
        call()
        return time.thread_time() - start

    plain, longest = [], []
    for i in range(3):
        layer = _map(f"plain {i}", visible=False)
        plain.append(cpu(lambda layer=layer: _layers.add_quietly(viewer, layer)))
        qtbot.wait(20)
        staged = StagedAdd(viewer, _map(f"staged {i}", visible=False))
        longest.append(max(cpu(staged.build_visual), cpu(staged.build_controls), cpu(staged.mount_controls),
                           cpu(staged.insert)))
        assert staged.staged
        qtbot.wait(20)
    assert np.median(longest) < 0.75 * np.median(plain), (plain, longest)



def test_a_hidden_layer_is_inserted_without_a_repaint_and_a_shown_one_with_one(make_napari_viewer, qtbot, canvas_draws):
    """Inserting a hidden layer changes no pixel, so it costs no paint of the canvas (45-70 ms on
    software GL); a visible one must be painted."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((20, 30, 30), np.float32), name="scan", contrast_limits=(0, 1))
    draws = canvas_draws(viewer)
    hidden = StagedAdd(viewer, _map("hidden", visible=False))
    hidden.build_visual()
    hidden.mount_controls()
    hidden.insert()
    qtbot.wait(150)
    assert hidden.staged and draws == []
    assert "update" not in vars(viewer.window._qt_viewer.canvas._scene_canvas)  # vispy's own method again
    shown = StagedAdd(viewer, _map("shown"))
    shown.insert()
    qtbot.waitUntil(lambda: len(draws) >= 1, timeout=2000)
    hidden.layer.visible = True  # later changes repaint as usual
    before = len(draws)
    qtbot.waitUntil(lambda: len(draws) > before, timeout=2000)


def test_mounted_controls_of_a_layer_never_inserted_leave_napari_stack(make_napari_viewer):
    viewer = make_napari_viewer()
    stack = viewer.window._qt_viewer.controls
    slots = stack.count()
    staged = StagedAdd(viewer, _map("cancelled", visible=False))
    staged.mount_controls()  # builds the controls first
    assert stack.count() == slots + 1 and stack.indexOf(staged.controls) >= 0
    assert stack.currentWidget() is not staged.controls  # in the stack, not shown
    staged.discard()
    assert stack.count() == slots and staged.controls is None and staged.mounted is None


def test_no_repaint_nests_and_puts_vispys_update_back_once(make_napari_viewer):
    from napari_bavis.napari._staged_add import no_repaint, scene_canvas

    viewer = make_napari_viewer()
    scene = scene_canvas(viewer)
    with no_repaint(viewer):
        with no_repaint(viewer):  # e.g. a hidden map's colour bar made inside a hidden insert
            pass
        assert "update" in vars(scene)  # still held back: the inner one left it to the outer
    assert "update" not in vars(scene)
    with no_repaint(viewer, when=False):
        assert "update" not in vars(scene)
