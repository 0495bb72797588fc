"""npe2 reader: NIfTI/MGH scans as image layers in scanner RAS millimetres."""

from __future__ import annotations

from napari.utils.notifications import show_error, show_warning

from ..errors import BavisError
from ..io import is_scan_path, load_scan

#: napari's "read fine, nothing to add" sentinel: no layer, no traceback dialog.
NOTHING_READ = [(None,)]


def get_reader(path):
    paths = [path] if isinstance(path, (str, bytes)) or not hasattr(path, "__iter__") else list(path)
    if not paths or not all(is_scan_path(str(p)) for p in paths):
        return None
    return read_scans


def read_scans(path):
    """Every readable scan becomes one layer; each unreadable one becomes one error notification."""
    paths = [path] if isinstance(path, (str, bytes)) or not hasattr(path, "__iter__") else list(path)
    layers = []
    for p in paths:
        try:
            scan = load_scan(p)
        except BavisError as err:
            show_error(str(err))
            continue
        for message in scan.warnings:
            show_warning(message)
        layers.append(scan_layer_data(scan))
    if layers:
        orient_current_viewer()
    return layers or NOTHING_READ


def orient_current_viewer() -> None:
    """Anterior up in the axial view from the first scan on (napari's default puts it down)."""
    import napari

    from .. import settings
    from ._display import apply_view

    viewer = napari.current_viewer()
    if viewer is not None:
        apply_view(viewer, "axial", settings.load()["convention"])


def scan_layer_data(scan, name: str | None = None):
    kwargs = scan.layer_kwargs()
    if name:
        kwargs["name"] = name
    lo, hi = float(scan.data.min()), float(scan.data.max())
    kwargs.update(colormap="gray", contrast_limits=(lo, hi), rendering="mip")
    return (scan.data, kwargs, "image")
