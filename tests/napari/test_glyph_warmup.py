"""The legend's glyphs drawn invisibly once per session after a widget docks (_glyph_warmup.py):
the canvas text overlay ends as it was, and a legend written meanwhile is never clobbered."""

import pytest

from napari_bavis.napari import _glyph_warmup, _map_view


@pytest.fixture
def fresh_warmup(monkeypatch):
    monkeypatch.setattr(_glyph_warmup, "_state", {"done": False, "running": False})
    monkeypatch.setattr(_glyph_warmup, "START_MS", 1)
    monkeypatch.setattr(_glyph_warmup, "PAUSE_MS", 1)


def test_warmup_cycles_every_character_and_restores_the_overlay(make_napari_viewer, qtbot, fresh_warmup):
    viewer = make_napari_viewer(show=True)  # a canvas that paints (a hidden one rasterises nothing)
    overlay = _map_view.text_overlay(viewer)
    overlay.text, overlay.visible, overlay.box = "the user's note", False, True
    seen = []
    overlay.events.text.connect(lambda event: seen.append(overlay.text))
    _glyph_warmup.warm_glyphs_soon(viewer)
    _glyph_warmup.warm_glyphs_soon(viewer)  # a second widget while it runs: one warm-up only
    qtbot.waitUntil(lambda: _glyph_warmup._state["done"], timeout=10000)
    assert "".join(seen[:-1]) == _glyph_warmup.CHARACTERS  # every character was drawn, once, in order
    assert (overlay.text, overlay.visible, overlay.box, overlay.color) == ("the user's note", False, True, None)
    count = len(seen)
    _glyph_warmup.warm_glyphs_soon(viewer)  # done for the session: nothing more
    qtbot.wait(50)
    assert len(seen) == count


def test_a_legend_shown_mid_warmup_stays_visible(make_napari_viewer, qtbot, fresh_warmup):
    viewer = make_napari_viewer()
    overlay = _map_view.text_overlay(viewer)
    _glyph_warmup.warm_glyphs_soon(viewer)
    qtbot.waitUntil(lambda: overlay.text != "", timeout=5000)  # the warm-up is drawing (at alpha 0)
    assert overlay.color is not None and overlay.color[3] == 0 and overlay.box is False
    _map_view.show_legend_text(viewer, "SMOE\ncut 0.412 (top 5 %)")
    qtbot.waitUntil(lambda: not _glyph_warmup._state["running"], timeout=5000)
    assert overlay.text.startswith("SMOE\ncut 0.412") and overlay.visible
    assert overlay.color is None and overlay.box is True  # the legend's own look, readable
    assert not _glyph_warmup._state["done"]  # a later widget may warm up again


def test_a_warmup_that_painted_nothing_is_not_done(make_napari_viewer, qtbot, fresh_warmup):
    """A viewer never shown (or closed before its canvas painted) drew no glyph: a later widget
    must warm up again, not find it done."""
    viewer = make_napari_viewer()  # not shown: its canvas never paints
    overlay = _map_view.text_overlay(viewer)
    seen = []
    overlay.events.text.connect(lambda event: seen.append(overlay.text))
    _glyph_warmup.warm_glyphs_soon(viewer)
    qtbot.waitUntil(lambda: not _glyph_warmup._state["running"], timeout=10000)
    assert "".join(seen[:-1]) == _glyph_warmup.CHARACTERS and not _glyph_warmup._state["done"]
