"""A tiny brain-age checkpoint on a 6 mm grid and small scanner-space scans, made once per session."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import pytest

from bad_scans import write_bad_scans  # noqa: F401
from cli_builders import TINY_PREPROCESSING, _grid, scanner_scan, tiny_checkpoint







@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """ba3d with a few channels, sex input, trained ages 40-90 (untrained weights; the age is ~60)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_siamese(tmp_path_factory) -> Path:
    import torch

    from napari_bavis import models

    torch.manual_seed(1)
    grid = _grid()
    kwargs = {"channels": [2, 4, 4], "final_channels": 4, "head": [8], "dropout": 0.0,
              "volume_shape": list(grid.shape)}
    try:
        module = models.build("siamese3d", **kwargs)
    except Exception as err:  # pragma: no cover - depends on the models package's kwargs
        pytest.skip(f"cannot build a small siamese3d: {err}")
    card = models.default_card("siamese3d", name="tiny-siamese", grid=grid.to_dict(), input_kind="t1",
                               architecture_kwargs=kwargs, preprocessing=dict(TINY_PREPROCESSING))
    path = tmp_path_factory.mktemp("models") / "tiny-siamese.pt"
    models.save_checkpoint(path, module, card)
    return path




@pytest.fixture(scope="session")
def good_scans(tmp_path_factory) -> list[Path]:
    """Two 3 mm LPS scans in different poses, in nested folders."""
    root = tmp_path_factory.mktemp("good")
    out = []
    for i, (rot, shift) in enumerate((((6, -4, 3), (4, -6, 8)), ((-5, 3, -8), (-3, 5, -4)))):
        path = root / f"site{i}" / f"sub-{i + 1:02d}_T1w.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(scanner_scan(rot, shift), path)
        out.append(path)
    return out


