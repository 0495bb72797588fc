"""Tiny checkpoints on a coarse grid, so pipeline tests spend their time on real preprocessing only."""

from __future__ import annotations

import torch

from napari_bavis import models
from napari_bavis.grid import Grid

GRID_6MM = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 6.0)


def tiny_brain_age_checkpoint(path, with_sex: bool = False, age_range=(20.0, 90.0)):
    torch.manual_seed(0)
    kwargs = dict(channels=[4, 8, 8], final_channels=8, use_sex=with_sex, volume_shape=list(GRID_6MM.shape), output_bias=50.0)
    model = models.build("ba3d", **kwargs)
    card = models.default_card(
        "ba3d", name="tiny", grid=GRID_6MM.to_dict(), input_kind="t1", architecture_kwargs=kwargs,
        sex_encoding={"F": 0.0, "M": 1.0} if with_sex else None, training_age_range=list(age_range),
        bias_correction={"method": "offset", "alpha": 0.1, "beta": -5.0},
    )
    card.preprocessing["intensity_normalisation"] = "zscore"
    models.save_checkpoint(path, model, card)
    return path


def tiny_siamese_checkpoint(path):
    torch.manual_seed(0)
    kwargs = dict(channels=[4, 8, 8], final_channels=8, head=[16, 8], dropout=0.0, volume_shape=list(GRID_6MM.shape))
    model = models.build("siamese3d", **kwargs).eval()
    with torch.no_grad():
        e = model(torch.rand(2, 1, *GRID_6MM.shape))
    card = models.default_card(
        "siamese3d", name="tiny-siamese", grid=GRID_6MM.to_dict(), input_kind="t1", architecture_kwargs=kwargs,
        task="siamese", sex_encoding=None,
        reference_embeddings={"healthy": e[0].tolist(), "AD-like": e[1].tolist()},
    )
    card.preprocessing["intensity_normalisation"] = "zscore"
    models.save_checkpoint(path, model, card)
    return path
