"""The legend's characters drawn once per session, a few per event-loop turn, soon after a widget docks.

Why: vispy draws canvas text from glyphs it rasterises on the CPU the first time each character is
shown. The first result's colour bar and legend paid it in one paint: 0.35 + 0.5 s of GUI CPU on
two cores, 1.3 s with two CPU burners (issue 13). Drawn beforehand, invisibly (the canvas text
overlay at alpha 0, restored afterwards), in chunks of three characters (~30-60 ms of GUI CPU each), they then
cost 30-80 ms. vispy keeps the glyphs per font for the whole process, so this runs once.
"""

from __future__ import annotations

import string

from ._map_view import text_overlay
from ._staged_add import scene_canvas

#: What the legend, the colour bar's ticks, method titles and scan names are written with.
CHARACTERS = string.digits + string.ascii_letters + " .,:;%()+-_·×−±/'#[]"
CHUNK = 3
PAUSE_MS = 30
START_MS = 300
_state = {"done": False, "running": False}


def warm_glyphs_soon(viewer) -> None:
    """Start the warm-up ``START_MS`` after now (once per process; a running one is left alone)."""
    if _state["done"] or _state["running"]:
        return
    from qtpy.QtCore import QTimer

    _state["running"] = True

    def start() -> None:
        try:
            _Warmup(viewer).step()
        except Exception:  # e.g. the viewer went meanwhile: a later widget starts again
            _state["running"] = False

    QTimer.singleShot(START_MS, start)


class _Warmup:
    def __init__(self, viewer) -> None:
        self.overlay = text_overlay(viewer)
        self.saved = (self.overlay.text, self.overlay.color, self.overlay.visible, self.overlay.box)
        self.chunks = [CHARACTERS[i:i + CHUNK] for i in range(0, len(CHARACTERS), CHUNK)]
        self.written = self.overlay.text
        scene = scene_canvas(viewer)
        self.draw_event = None if scene is None else scene.events.draw
        self.paints = None if scene is None else 0  # paints of the canvas meanwhile (None: not counted)
        if self.draw_event is not None:
            self.draw_event.connect(self._painted)

    def _painted(self, event=None) -> None:
        self.paints += 1

    def step(self) -> None:
        from qtpy.QtCore import QTimer

        try:
            if self.overlay.text != self.written:  # someone wrote the overlay (a legend): its text stays
                self._end(done=False, restore=False)
                return
            if not self.chunks:
                self._end(done=True, restore=True)
                return
            self.written = self.chunks.pop(0)
            self.overlay.text = self.written
            self.overlay.color = (1.0, 1.0, 1.0, 0.0)
            self.overlay.box = False  # its background box would show
            self.overlay.visible = True
        except RuntimeError:  # the viewer went meanwhile: a later widget starts again
            self._end(done=False, restore=False)
            return
        QTimer.singleShot(PAUSE_MS, lambda: self.step())  # a lambda: PyQt keeps only a weak bound method

    def _end(self, done: bool, restore: bool) -> None:
        """Stop; the overlay's look back as it was (and its text and visibility with ``restore``).
        Done only if the canvas painted meanwhile: a hidden or closed viewer rasterises no glyph."""
        if self.draw_event is not None:
            self.draw_event.disconnect(self._painted)
        _state["running"], _state["done"] = False, done and self.paints != 0
        text, color, visible, box = self.saved
        try:
            self.overlay.color, self.overlay.box = color, box
            if restore:
                self.overlay.text, self.overlay.visible = text, visible
        except RuntimeError:
            pass
