"""npe2 writer: image layers to NIfTI, back on the grid and affine of the file they came from."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error

from ..errors import BavisError
from ..io import affine_from_layer_geometry, display_to_source, nifti_like, write_nifti
from ..outputs import os_error_text


def write_image(path: str, data, meta: dict) -> list[str]:
    """Never replaces the file the layer was read from (also through ``..`` or a symlink); every
    failure is one notification line, not a traceback dialog."""
    try:
        img = layer_to_nifti(np.asarray(data), meta)
        return [write_nifti(path, img, protect=source_paths(meta))]
    except BavisError as err:
        show_error(str(err))
    except OSError as err:
        show_error(f"cannot save {path}: {os_error_text(err)}")
    return []


def source_paths(meta: dict) -> tuple[str, ...]:
    """The files this layer's data came from (the reader's record, napari's own source path)."""
    source = (meta.get("metadata") or {}).get("bavis_source") or {}
    paths = [source.get("path"), (meta.get("source") or {}).get("path") if isinstance(meta.get("source"), dict) else None]
    return tuple(str(p) for p in paths if p)


def layer_to_nifti(data: np.ndarray, meta: dict):
    """The file's own grid when the layer still sits on the reader's display grid, else its scale/translate."""
    if data.ndim != 3:
        raise BavisError(f"only 3D image layers can be saved as NIfTI (this one has {data.ndim} dimensions)")
    source = (meta.get("metadata") or {}).get("bavis_source")
    scale = meta.get("scale", (1.0, 1.0, 1.0))
    translate = meta.get("translate", (0.0, 0.0, 0.0))
    if source is not None and _on_display_grid(data, scale, translate, source):
        return display_to_source(
            data,
            source["display_affine"],
            source["source_affine"],
            source["source_shape"],
            source["oblique_deg"] > 0.01,
            source.get("header"),
        )
    affine = affine_from_layer_geometry(scale, translate, meta.get("axis_labels"))
    return nifti_like(data, affine, source.get("header") if source else None)


def _on_display_grid(data, scale, translate, source) -> bool:
    affine = np.asarray(source["display_affine"])
    expected_scale = [abs(affine[2 - i, i]) for i in range(3)]
    expected_translate = [affine[2 - i, 3] for i in range(3)]
    return (
        tuple(data.shape) == tuple(source["display_shape"])
        and np.allclose(scale, expected_scale, atol=1e-4)
        and np.allclose(translate, expected_translate, atol=1e-3)
    )
