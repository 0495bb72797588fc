"""How the viewer shows a result's maps: one map at a time, its legend, a selection left alone.

The maps panel decides *which* map is shown (its selector); these helpers make the viewer show
it readably with napari's own overlays, no drawing of ours:

- one map visible at a time (the others hidden, never deleted; the compare widget shows the
  same method on each of its two scans);
- a legend on the canvas: the shown map's colour bar (``layer.colorbar``; below the cut the bar
  is transparent, as the map is) and a text overlay naming the map and its cut;
- adding or updating a helper layer (the region outlines) never changes the layer list's
  selection, so it never becomes the active layer with its paint tools.
"""

from __future__ import annotations

from contextlib import contextmanager

from . import _layers
from ._staged_add import no_repaint

#: Region outlines: the Labels layer drawn as contours this many voxels wide, nearly opaque, so the
#: map inside and under them stays visible (the filled Labels layer hid it). napari's Labels takes
#: ``contour`` as an attribute, not as a constructor argument.
OUTLINE_CONTOUR = 1
OUTLINE_OPACITY = 0.9
#: One colour for every region's outline: bright green stands out on inferno's black-purple-orange-
#: yellow and on the grey scan (the brain mask's outline is cyan); the table's "#" names the regions.
OUTLINE_COLOR = "#3cff3c"
#: Where the legend sits: the bottom right corner, usually free below a brain fitted to the canvas.
LEGEND_POSITION = "bottom_right"
#: The legend's colour: None is napari's own (it follows the theme, light text on a dark canvas).
LEGEND_COLOR = None
#: Marks the canvas text overlay as written by a maps panel (so clearing leaves others' text alone).
LEGEND_MARK = "\u2009"  # a thin space at the end of the text: invisible, but recognisable


def same(a, b) -> bool:
    """Layer identity through napari's proxies (a docked widget's viewer hands out wrapped layers)."""
    return getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def show_only(entries: list[dict], selected: dict) -> None:
    """Make the selected map's layer visible and hide the other maps (one per scan: same method)."""
    for entry in entries:
        shown = entry is selected or (entry["method"] == selected["method"] and entry["scan"] != selected["scan"])
        if entry["layer"].visible != shown:
            entry["layer"].visible = shown


def text_overlay(viewer):
    """The canvas text overlay (``viewer.canvas.overlays["text"]`` in napari ≥ 0.9, else ``viewer.text_overlay``)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None and "text" in overlays:
        return overlays["text"]
    return viewer.text_overlay


def legend_text(entry: dict, cut: float, threshold: float, mode: str, with_scan: bool = False) -> str:
    """Short lines, so the legend stays in its corner clear of the orientation letters:
    ``SMOE×Grad-CAM++`` (the scan's name in the compare widget) and ``cut 0.412 (top 5 %)``."""
    lines = [_layers.method_title(entry["method"])] + ([str(entry["scan"])] if with_scan else [])
    lines.append(f"cut {cut:.3f} (top {threshold:g} %)" if mode == "top_percent" else f"cut {cut:.3f} (map value)")
    return "\n".join(lines)


def show_legend(viewer, selected: dict, text: str) -> None:
    """The selected map's colour bar on and ``text`` in the canvas text overlay. Every other layer's
    colour bar goes off, the other panel's too: the canvas has one text overlay, so with the analysis
    and the compare widget both open, two bars under one legend would name only one of them."""
    show_colour_bar(viewer, selected)
    show_legend_text(viewer, text)


def show_colour_bar(viewer, selected: dict) -> None:
    """``show_legend``'s first half (a turn of its own when results are added: the bar's first paint
    is 114-147 ms on software GL; ``prepare_colour_bar`` has made its visual in an earlier turn)."""
    bar = selected["layer"].colorbar
    _style_bar(bar)
    for layer in viewer.layers:
        other = getattr(layer, "colorbar", None)
        if other is not None and other.visible and not same(layer, selected["layer"]):
            other.visible = False
    bar.visible = True


def prepare_colour_bar(viewer, selected: dict) -> None:
    """The colour bar's napari visual made while its map is still hidden (the bar's first switch-on
    costs ~80 ms to make its visual and ~130 ms in the paint after it on software GL; apart, they
    are two short freezes, not one long one). On and off again: napari keeps the visual, and a
    hidden layer's overlay draws nothing, so no repaint is asked for."""
    layer = selected["layer"]
    if layer.visible:
        return
    _style_bar(layer.colorbar)
    with no_repaint(viewer):
        layer.colorbar.visible = True
        layer.colorbar.visible = False


def _style_bar(bar) -> None:
    bar.position = LEGEND_POSITION
    bar.size = (18, 120)
    bar.font_size = 9


def show_legend_text(viewer, text: str) -> None:
    """``show_legend``'s second half: the map's name and cut in the canvas text overlay."""
    overlay = text_overlay(viewer)
    overlay.position = LEGEND_POSITION
    overlay.font_size = 10
    overlay.color = LEGEND_COLOR  # set, not assumed: a glyph warm-up (_glyph_warmup.py) draws at alpha 0
    overlay.text = text + LEGEND_MARK
    overlay.visible = True


def hide_legend(viewer, entries: list[dict]) -> None:
    """Colour bars off; the text overlay off if a maps panel wrote it (someone else's text stays)."""
    for entry in entries:
        entry["layer"].colorbar.visible = False
    overlay = text_overlay(viewer)
    if overlay.text.endswith(LEGEND_MARK):
        overlay.text = ""
        overlay.visible = False


def outline_colormap():
    """Every label in ``OUTLINE_COLOR``, the background transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: OUTLINE_COLOR, 0: [0, 0, 0, 0]})


@contextmanager
def keep_selection(viewer):
    """Whatever layers the block adds or updates, the layer list's selection and active layer stay."""
    selection = viewer.layers.selection
    before = [getattr(layer, "__wrapped__", layer) for layer in selection]
    try:
        yield
    finally:
        live = [layer for layer in before if any(same(layer, other) for other in viewer.layers)]
        now = [getattr(layer, "__wrapped__", layer) for layer in selection]
        if len(now) != len(live) or not all(any(a is b for b in live) for a in now):
            selection.clear()
            selection.update(live)  # one layer: it is the active one again
