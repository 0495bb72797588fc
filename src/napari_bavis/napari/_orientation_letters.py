"""Anatomical letters at the canvas edges (L/R, A/P, S/I), from the displayed axes and the camera.

Why: a map on an axial slice means little until one knows which side is the patient's left, and
napari shows neither the plane nor the convention. The plugin's layers run along world axes named
by anatomical letters (``io.DISPLAY_AXES`` = S, A, R: the coordinate grows towards that side), so
the two displayed axes (the last two of ``dims.order``) and the camera's ``orientation2d`` (which
the Brain display widget sets for the neurological or radiological convention) say which letter
belongs on which edge. Four napari text overlays on the canvas (duplicated in each grid cell) carry
them; they follow the plane, the convention and a flip of the camera, and hide in 3D or when the
displayed axes are not named by anatomical letters (a layer from elsewhere).
"""

from __future__ import annotations

from ._display import camera_of

OPPOSITE = {"S": "I", "I": "S", "A": "P", "P": "A", "R": "L", "L": "R"}
#: canvas edge -> napari canvas position of its letter
EDGES = {"top": "top_center", "bottom": "bottom_center", "left": "middle_left", "right": "middle_right"}
FONT_SIZE = 12


def _key(edge: str) -> str:
    return f"bavis orientation {edge}"


def letters(axis_labels, order, orientation2d) -> dict[str, str] | None:
    """{edge: letter} for the 2D view, or None when the displayed axes are not anatomical letters.

    ``orientation2d`` = (vertical, horizontal) directions in which the displayed axes grow on screen
    ("up"/"down", "left"/"right"); the last two entries of ``order`` are the (vertical, horizontal) axes.
    """
    if len(order) < 2:
        return None
    vertical, horizontal = (str(axis_labels[axis]).strip().upper() for axis in tuple(order)[-2:])
    if vertical not in OPPOSITE or horizontal not in OPPOSITE:
        return None
    v_dir, h_dir = (str(getattr(d, "value", d)).lower() for d in orientation2d)
    top, bottom = (vertical, OPPOSITE[vertical]) if v_dir == "up" else (OPPOSITE[vertical], vertical)
    right, left = (horizontal, OPPOSITE[horizontal]) if h_dir == "right" else (OPPOSITE[horizontal], horizontal)
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def _overlays(viewer):
    return getattr(getattr(viewer, "canvas", None), "overlays", None)


def refresh(viewer) -> None:
    overlays = _overlays(viewer)
    if overlays is None or _key("top") not in overlays:
        return
    shown = None
    if viewer.dims.ndisplay == 2:
        shown = letters(viewer.dims.axis_labels, viewer.dims.order, camera_of(viewer).orientation2d)
    for edge in EDGES:
        overlay = overlays[_key(edge)]
        overlay.text = shown[edge] if shown else ""
        overlay.visible = bool(shown)


def attach(viewer) -> None:
    """Put the letters on the viewer's canvas (once per viewer; later calls do nothing) and keep them
    up to date. A napari without canvas overlays (< 0.9) shows none."""
    overlays = _overlays(viewer)
    if overlays is None or _key("top") in overlays:
        return
    from napari.components.overlays import TextOverlay

    for edge, position in EDGES.items():
        overlays[_key(edge)] = TextOverlay(position=position, font_size=FONT_SIZE, gridded=True, visible=False)

    def update(*_) -> None:
        refresh(viewer)

    for name in ("order", "ndisplay", "axis_labels"):
        getattr(viewer.dims.events, name).connect(update)
    camera_of(viewer).events.orientation2d.connect(update)
    refresh(viewer)
