"""Adding a layer to napari in four event-loop turns instead of one (issue 13).

``viewer.add_layer`` of a 1 mm map costs napari 60–110 ms of GUI-thread CPU in one call: its vispy
visual (~40 ms), its layer controls (~30 ms), putting those controls in their stack (~30 ms) and the
layer list's bookkeeping (~20 ms), and a repaint of the whole canvas follows at once (45–70 ms on
software GL). On two busy cores that one call became a 200–250 ms freeze while results were added.
Here the visual and the controls are built for the layer *before* it joins the viewer, each in its
own turn, the controls are put in their (hidden) stack slot in a third, and the last turn inserts it
with napari's own builders for those skipped, handing napari the ready objects, so no turn is left
where the layer is in the viewer without its visual or controls. A layer inserted hidden asks for no
repaint: not one pixel changes, and the next visible change repaints the whole canvas anyway.

This reaches into napari's Qt viewer (``window._qt_viewer``, its canvas and its layer-controls
container): private names, checked at every use. Where any is missing (another napari, a viewer
without a window), the staged add falls back to one plain ``add_quietly`` in the last turn, so the
layer is always added the ordinary way at worst. ``tests/napari/test_staged_add.py`` checks that a
staged layer behaves like an added one (drawn, its controls shown when selected, removed cleanly).
"""

from __future__ import annotations

from contextlib import contextmanager

from ._layers import add_quietly


def _qt_parts(viewer):
    """(qt_viewer, canvas, controls container) of a napari window, or None."""
    raw = getattr(viewer, "__wrapped__", viewer)
    try:
        qt_viewer = raw.window._qt_viewer
        canvas, controls = qt_viewer.canvas, qt_viewer.controls
        if getattr(qt_viewer, "_qt_poll", None) is not None:  # napari's experimental poll wants its hooks
            return None
        needed = (qt_viewer._on_add_layer_change, canvas.add_layer_visual_mapping, canvas.font_info,
                  canvas._scene_canvas.update, controls._add, controls.widgets, controls.addWidget)
        from napari.settings import get_settings

        if get_settings().experimental.dynamic_layer_controls:  # napari makes controls on selection then
            return None
    except Exception:  # no window, or another napari: the plain add
        return None
    return (qt_viewer, canvas, controls) if all(n is not None for n in needed) else None


class StagedAdd:
    """``build_visual()``, ``build_controls()``, ``mount_controls()``, then ``insert()``: one call per
    event-loop turn.

    Any of them may be skipped (``insert`` builds what is missing, as napari would). Until
    ``insert`` nothing of napari's points at the prepared visual, and only the controls stack holds
    mounted controls: a layer that is never added (a cancelled run) must be ``discard()``-ed, which
    takes them out (``RunWidget._drop_stages`` does it for a run's result layers)."""

    def __init__(self, viewer, layer):
        self.viewer, self.layer = viewer, layer
        self.parts = _qt_parts(viewer)
        self.visual = None
        self.controls = None
        self.mounted = None  # the stack the controls sit in (not shown until their layer is selected)
        self.staged = False  # True once insert() used the prepared parts (False: the plain add)

    def build_visual(self) -> None:
        if self.parts is None or self.visual is not None:
            return
        from napari._vispy.utils.visual import create_vispy_layer

        _, canvas, _ = self.parts
        try:
            self.visual = create_vispy_layer(self.layer, font_info=canvas.font_info())
        except Exception:  # a napari whose builder differs: napari builds it at insert
            self.visual, self.parts = None, None

    def build_controls(self) -> None:
        if self.parts is None or self.controls is not None:
            return
        from napari._qt.layer_controls.qt_layer_controls_container import create_qt_layer_controls

        try:
            self.controls = create_qt_layer_controls(self.layer)
            self.controls.ndisplay = self.viewer.dims.ndisplay
        except Exception:
            self.controls, self.parts = None, None

    def mount_controls(self) -> None:
        """The built controls into napari's layer-controls stack, not current: nothing shows yet."""
        self.build_controls()
        if self.parts is None or self.controls is None or self.mounted is not None:
            return
        self.mounted = self.parts[2]
        self.mounted.addWidget(self.controls)

    def insert(self):
        """The layer joins the viewer (not as the active layer), with the visual and controls built."""
        self.build_visual()
        self.mount_controls()
        if self.parts is None or self.visual is None or self.controls is None:
            self.discard()
            return add_quietly(self.viewer, self.layer)
        qt_viewer, canvas, container = self.parts
        inserted = getattr(self.viewer.layers, "__wrapped__", self.viewer.layers).events.inserted
        with no_repaint(self.viewer, when=not self.layer.visible):  # a hidden layer changes no pixel
            with inserted.blocker(qt_viewer._on_add_layer_change), inserted.blocker(container._add):
                add_quietly(self.viewer, self.layer)
            # what napari's two skipped callbacks do, with the prepared objects
            container.widgets[self.layer] = self.controls
            canvas.add_layer_visual_mapping(self.layer, self.visual)
        self.staged = True
        return self.layer

    def discard(self) -> None:
        """Let go of a prepared visual and controls that were not used."""
        if self.visual is not None:
            try:
                self.visual.close()
            except Exception:
                pass
        if self.controls is not None:
            try:
                if self.mounted is not None:
                    self.mounted.removeWidget(self.controls)
                self.controls.deleteLater()
            except Exception:
                pass
        self.visual = self.controls = self.mounted = None


def scene_canvas(viewer):
    """The vispy ``SceneCanvas`` a napari window draws in, or None (no window, another napari)."""
    raw = getattr(viewer, "__wrapped__", viewer)
    try:
        return raw.window._qt_viewer.canvas._scene_canvas
    except Exception:
        return None


@contextmanager
def no_repaint(viewer, when: bool = True):
    """No canvas repaint is asked for inside (``when``): for changes that alter no pixel (a hidden
    layer, a hidden layer's overlay), so that they do not cost a paint of the whole canvas. Any later
    change repaints all of it. An instance attribute stands in for vispy's ``update`` meanwhile; an
    inner ``no_repaint`` inside an outer one leaves it to the outer to put vispy's back."""
    scene = scene_canvas(viewer) if when else None
    if scene is None or "update" in vars(scene):
        yield
        return
    scene.update = _no_repaint
    try:
        yield
    finally:
        del scene.update


def _no_repaint(node=None) -> None:
    """Stands in for the scene canvas's ``update`` inside ``no_repaint``."""
