"""Camera set-up for anatomical views: anterior/superior up, left-right by convention.

Radiological vs neurological is a camera orientation, never a negative scale
(negative scales break napari's world coordinates).
"""

from __future__ import annotations

CONVENTIONS = ("neurological", "radiological")
PLANES = ("axial", "coronal", "sagittal")
#: dims order for layers on the (S, A, R) display grid: the first entry is the slider axis.
PLANE_ORDER = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}


def camera_of(viewer):
    scene = getattr(viewer, "scene", None)
    return getattr(scene, "camera", None) or viewer.camera


def orientation2d(plane: str, convention: str) -> tuple[str, str]:
    """(vertical, horizontal) directions: A or S up; R to the right in neurological convention."""
    if plane not in PLANES or convention not in CONVENTIONS:
        raise ValueError(f"unknown plane/convention {plane!r}/{convention!r}")
    if plane == "sagittal":  # horizontal axis is A: anterior on the left, as most viewers show it
        return ("up", "left")
    return ("up", "right" if convention == "neurological" else "left")


def apply_view(viewer, plane: str = "axial", convention: str = "neurological") -> None:
    if viewer.dims.ndim >= 3:
        lead = tuple(range(viewer.dims.ndim - 3))
        viewer.dims.order = lead + tuple(len(lead) + i for i in PLANE_ORDER[plane])
    camera_of(viewer).orientation2d = orientation2d(plane, convention)
