"""Activated regions: connected components of a map above a threshold, measured in millimetres."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

THRESHOLD_MODES = ("value", "top_percent")


def threshold_value(values: np.ndarray, threshold: float = 0.3, mode: str = "value") -> float:
    """The map value above which voxels count as activated.

    ``mode="value"``: ``threshold`` is a map value in [0, 1] (the thesis used 0.3).
    ``mode="top_percent"``: ``threshold`` is k, keeping the k % highest voxels of the map's support.
    """
    if mode == "value":
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        return float(threshold)
    if mode == "top_percent":
        if not 0.0 < threshold <= 100.0:
            raise ValueError(f"top percent must be in (0, 100], got {threshold}")
        support = values[values > 0]
        if support.size == 0:
            return 1.0
        return float(np.percentile(support, 100.0 - threshold))
    raise ValueError(f"threshold mode must be one of {THRESHOLD_MODES}, not {mode!r}")


@dataclass
class Region:
    label: int
    volume_mm3: float
    peak_value: float
    peak_ras_mm: tuple[float, float, float]
    centroid_ras_mm: tuple[float, float, float]
    share_of_map: float  # fraction of the whole map's sum that lies inside this region
    atlas_name: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def activated_regions(
    values: np.ndarray,
    affine: np.ndarray,
    cutoff: float,
    min_size_mm3: float = 0.0,
) -> tuple[np.ndarray, list[Region]]:
    """Label 26-connected components with ``values > cutoff``, biggest share of the map first.

    ``affine`` maps voxel indices of ``values`` to RAS mm. Components smaller than
    ``min_size_mm3`` are dropped. Returns an int32 label array (0 = background) and the table.
    """
    values = np.asarray(values, dtype=np.float32)
    affine = np.asarray(affine, dtype=float)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    labels, n = ndimage.label(values > cutoff, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return labels.astype(np.int32), []
    # Measure on the labelled voxels only (usually a small share of the volume): bincount, not argsort.
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat] - 1
    val = values.ravel()[flat]
    coords = np.array(np.unravel_index(flat, values.shape), dtype=float)
    sizes = np.bincount(lab, minlength=n).astype(float)
    sums = np.bincount(lab, weights=val, minlength=n)
    centroids = [tuple(c) for c in (np.stack([np.bincount(lab, weights=val * c, minlength=n) for c in coords]) / np.where(sums > 0, sums, 1)).T]
    order = np.lexsort((val, lab))  # by label, then value: the last of each label is its peak
    last = np.r_[np.flatnonzero(np.diff(lab[order])), len(order) - 1]
    peaks = [tuple(coords[:, order[j]]) for j in last]
    peak_values = val[order[last]]
    total = float(values[values > 0].sum()) or 1.0

    keep = [i for i in range(n) if sizes[i] * voxel_mm3 >= min_size_mm3]
    keep.sort(key=lambda i: -sums[i])
    relabel = np.zeros(n + 1, dtype=np.int32)
    table: list[Region] = []
    for new, i in enumerate(keep, start=1):
        relabel[i + 1] = new
        table.append(
            Region(
                label=new,
                volume_mm3=float(sizes[i] * voxel_mm3),
                peak_value=float(peak_values[i]),
                peak_ras_mm=_to_ras(affine, peaks[i]),
                centroid_ras_mm=_to_ras(affine, centroids[i]),
                share_of_map=float(sums[i] / total),
            )
        )
    return relabel[labels], table


def _to_ras(affine: np.ndarray, index) -> tuple[float, float, float]:
    ras = affine[:3, :3] @ np.asarray(index, dtype=float) + affine[:3, 3]
    return tuple(round(float(v), 2) for v in ras)
