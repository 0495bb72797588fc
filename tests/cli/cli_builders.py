"""Tiny checkpoints and scanner-space scans for the CLI tests (conftest.py makes fixtures of them).
A module of its own: test files import these by name, and ``from conftest import`` would find another
folder's conftest in a full run."""

from __future__ import annotations

from pathlib import Path



MNI_BOX = ((-90, 90), (-126, 90), (-72, 108))


TINY_PREPROCESSING = {
    "bias_correction": False, "brain_extraction": True, "registration": "affine", "segmentation": False,
    "modulation": False, "smoothing_fwhm_mm": 0.0, "intensity_normalisation": "zscore",
}


def _grid():
    from napari_bavis.grid import Grid

    return Grid.from_bbox(MNI_BOX, 6.0)


def tiny_checkpoint(path: Path, name: str = "tiny", training_age_range=(40.0, 90.0), slabs: bool = False) -> Path:
    """A tiny brain-age checkpoint with a sex input (untrained weights; the brain age is ~60).

    ``slabs``: a small ba_slab (5 slabs of 6 slices) whose spread of slab ages is the uncertainty."""
    import torch

    from napari_bavis import models

    torch.manual_seed(0)
    grid = _grid()
    if slabs:
        architecture = "ba_slab"
        kwargs = {"width": 2, "blocks": [1, 1, 1, 1], "n_slabs": 5, "slab_depth": 6, "head": [4],
                  "volume_shape": list(grid.shape)}
    else:
        architecture = "ba3d"
        kwargs = {"channels": [2, 4, 4], "final_channels": 4, "head": [4], "output_bias": 60.0,
                  "volume_shape": list(grid.shape)}
    module = models.build(architecture, **kwargs)
    if slabs:  # an untrained head says ~0 years for every slab: centre it on 60 and let the slabs differ
        with torch.no_grad():
            module.head.out.bias.add_(60.0)
            module.head.out.weight.mul_(300.0)
    card = models.default_card(architecture, name=name, grid=grid.to_dict(), input_kind="t1",
                               architecture_kwargs=kwargs, preprocessing=dict(TINY_PREPROCESSING),
                               training_age_range=list(training_age_range))
    models.save_checkpoint(path, module, card)
    return path


def scanner_scan(rotation_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0), voxel_mm=3.0):
    from napari_bavis import samples

    return samples.to_scanner_space(samples.mni_t1(2), rotation_deg=rotation_deg, translation_mm=translation_mm,
                                    voxel_size=(voxel_mm,) * 3, storage="LPS")
