"""ba3d's ``gradcam_layer`` architecture kwarg: the card records which layer Grad-CAM hooks, the
checkpoint brings it back, and the explanation engine uses it by default."""

import pytest
import torch

from napari_bavis import models
from napari_bavis.errors import CheckpointError
from napari_bavis.explain import compute_maps
from napari_bavis.explain.engine import default_layers
from napari_bavis.grid import Grid

KWARGS = {"channels": [2, 4, 4], "final_channels": 4, "volume_shape": [16, 16, 16], "use_sex": False}
GRID = Grid.from_bbox(((0, 15), (0, 15), (0, 15)), 1.0)


def test_default_is_the_last_stage_and_an_earlier_stage_can_be_named():
    assert models.build("ba3d", **KWARGS).gradcam_layer == "trunk.block_final.relu"
    model = models.build("ba3d", **KWARGS, gradcam_layer="trunk.block_1.relu")
    assert model.gradcam_layer == "trunk.block_1.relu"
    x = torch.randn(1, 1, 16, 16, 16)
    assert default_layers(model, x)[0] == "trunk.block_1.relu"


def test_the_named_layer_survives_a_checkpoint_and_drives_the_maps(tmp_path):
    torch.manual_seed(0)
    model = models.build("ba3d", **KWARGS, gradcam_layer="trunk.block_1.relu").eval()
    card = models.default_card("ba3d", name="tiny", grid=GRID.to_dict(), training_age_range=[20.0, 90.0])
    models.save_checkpoint(tmp_path / "m.pt", model, card)
    loaded, saved = models.load_checkpoint(tmp_path / "m.pt", device="cpu")
    assert saved.architecture_kwargs["gradcam_layer"] == "trunk.block_1.relu"
    assert loaded.gradcam_layer == "trunk.block_1.relu"
    x = torch.randn(1, 1, 16, 16, 16)
    by_default = compute_maps(loaded, x, methods=("gradcam",))["gradcam"]
    named = compute_maps(loaded, x, methods=("gradcam",), layer="trunk.block_1.relu")["gradcam"]
    last = compute_maps(loaded, x, methods=("gradcam",), layer="trunk.block_final.relu")["gradcam"]
    assert torch.allclose(torch.as_tensor(by_default), torch.as_tensor(named))
    assert not torch.allclose(torch.as_tensor(by_default), torch.as_tensor(last))


def test_a_layer_the_model_does_not_have_is_one_line():
    with pytest.raises(CheckpointError) as err:
        models.build("ba3d", **KWARGS, gradcam_layer="trunk.block_9.relu")
    msg = str(err.value)
    assert "\n" not in msg and "block_9" in msg and "trunk.block_1.relu" in msg
