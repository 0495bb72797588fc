"""L/R, A/P, S/I letters at the canvas edges (issue 12 item 5): they follow the plane, the
convention and 3D, from the layers' anatomical axis names and the camera."""

import pytest
from test_analysis_widget import blob_scan, dock, open_scan  # noqa: F401

from napari_bavis.napari import _orientation_letters
from napari_bavis.napari._display import apply_view, orientation2d


@pytest.mark.parametrize("plane, convention, expected", [
    # (top, bottom, left, right)
    ("axial", "neurological", ("A", "P", "L", "R")),
    ("axial", "radiological", ("A", "P", "R", "L")),
    ("coronal", "neurological", ("S", "I", "L", "R")),
    ("coronal", "radiological", ("S", "I", "R", "L")),
    ("sagittal", "neurological", ("S", "I", "A", "P")),
])
def test_letters_of_each_plane_and_convention(plane, convention, expected):
    from napari_bavis.napari._display import PLANE_ORDER

    got = _orientation_letters.letters(("S", "A", "R"), PLANE_ORDER[plane], orientation2d(plane, convention))
    assert (got["top"], got["bottom"], got["left"], got["right"]) == expected


def test_letters_need_anatomical_axis_names():
    assert _orientation_letters.letters(("0", "1", "2"), (0, 1, 2), ("down", "right")) is None
    # napari's default camera (axis 0 of the view grows downwards): superior at the bottom
    assert _orientation_letters.letters(("A", "S", "R"), (0, 1, 2), ("down", "right"))["bottom"] == "S"


def _shown(viewer):
    overlays = viewer.canvas.overlays
    return {edge: overlays[_orientation_letters._key(edge)].text for edge in _orientation_letters.EDGES
            if overlays[_orientation_letters._key(edge)].visible}


def test_canvas_letters_follow_plane_convention_and_3d(make_napari_viewer, qtbot, blob_scan):
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    dock(viewer, qtbot)  # the maps panel puts the letters on the canvas
    apply_view(viewer, "axial", "neurological")
    assert _shown(viewer) == {"top": "A", "bottom": "P", "left": "L", "right": "R"}
    apply_view(viewer, "axial", "radiological")
    assert _shown(viewer) == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    apply_view(viewer, "coronal", "radiological")
    assert _shown(viewer) == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    viewer.dims.ndisplay = 3
    assert _shown(viewer) == {}  # no fixed edges in 3D
    viewer.dims.ndisplay = 2
    assert _shown(viewer)["top"] == "S"
    dock(viewer, qtbot)  # a second widget adds no second set
    assert sum(key.startswith("bavis orientation") for key in viewer.canvas.overlays) == 4
