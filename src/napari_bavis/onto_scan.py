"""Results carried back onto the scan a user opened: model-grid maps resampled in one step onto the
scan's display grid (zero outside its brain), the brain mask on that grid, the QC images, and the
geometry the maps are written back to the file's own voxels with."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from .io import Scan

def _display_brain_mask(pre, scan: Scan) -> np.ndarray | None:
    """Preprocessing's brain mask (on the file's own grid) on the scan's display grid (nearest)."""
    from .preprocess.geometry import resample_mask

    mask = getattr(pre, "brain_mask", None)
    if mask is None:
        return None
    return resample_mask(np.asarray(mask.dataobj) > 0.5, mask.affine, scan.data.shape, scan.display_affine)


def _qc_images(pre, display_mask: np.ndarray | None, scan: Scan) -> dict:
    """QC images with their own affines: the brain mask on the scan's display grid; the registered
    scan and the template on the model grid (shown together they check the registration)."""
    qc = {}
    if display_mask is not None:
        qc["brain mask"] = nib.Nifti1Image(display_mask.astype(np.uint8), scan.display_affine)
    for key, attr in (("registered scan", "registered_t1"), ("template", "template_t1")):
        image = getattr(pre, attr, None)
        if image is not None:
            qc[key] = image
    return qc


def _maps_on_scan(pre, scan: Scan, maps_model: dict, inside: np.ndarray | None) -> dict[str, np.ndarray]:
    """Model-grid maps on the scan's display grid, in one resampling straight from the model grid
    (preprocessing read the file's own grid; going through it first would interpolate twice), zero
    outside ``inside`` (the brain on the display grid) when given."""
    return _maps_on_grid(maps_model, pre.grid.affine, pre.template_to_scan, scan.data.shape, scan.display_affine, inside)


def _maps_on_grid(maps_model: dict, grid_affine, template_to_scan, shape, affine, inside) -> dict[str, np.ndarray]:
    """Model-grid maps resampled onto the voxel grid (shape, affine), clipped to [0, 1], zero outside ``inside``."""
    from .preprocess.geometry import resample
    from .regions import bounding_box

    if not maps_model:
        return {}
    names = list(maps_model)
    # Only the brain's bounding box is resampled (everything outside it is zero anyway): on a real
    # 288x288x181 scan that is about half the voxels.
    box = (bounding_box(inside) if inside is not None else None) or tuple(slice(0, n) for n in shape)
    box_affine = np.array(affine, float)
    box_affine[:3, 3] = box_affine[:3, :3] @ np.array([b.start for b in box]) + box_affine[:3, 3]
    stack = resample(np.stack([maps_model[name] for name in names]).astype(np.float32), grid_affine,
                     tuple(b.stop - b.start for b in box), box_affine, out_to_in_ras=np.linalg.inv(template_to_scan))
    inside_box = inside[box] if inside is not None else None
    out = {}
    for name, values in zip(names, stack):
        np.clip(values, 0.0, 1.0, out=values)
        if inside_box is not None:  # zero outside the brain: within the box (outside it all is zero)
            np.multiply(values, inside_box, out=values)
        native = np.zeros(tuple(shape), np.float32)
        native[box] = values
        out[name] = native
    return out


def _source_geometry(pre, restrict_to_brain: bool):
    """What ``Analysis.map_image`` needs to map the model grid straight onto the file's grid."""
    if getattr(pre, "grid", None) is None or getattr(pre, "template_to_scan", None) is None:
        return None
    mask = getattr(pre, "brain_mask", None) if restrict_to_brain else None
    inside = np.asarray(mask.dataobj) > 0 if mask is not None else None
    return (np.asarray(pre.grid.affine, float), np.asarray(pre.template_to_scan, float), inside)
