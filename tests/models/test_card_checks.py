"""Crafted checkpoints and cards (issue 14): no checksum, bad architecture_kwargs, out-of-range or
missing card fields are refused with one line naming the field; printed names are sanitised."""

from __future__ import annotations

import resource

import pytest
import torch

from napari_bavis import models
from napari_bavis.errors import CheckpointError
from napari_bavis.grid import Grid
from napari_bavis.models.card_checks import printable

KW = {"channels": [2, 4], "final_channels": 4, "volume_shape": [12, 14, 10]}
GRID = Grid.from_bbox(((0, 11), (0, 13), (0, 9)), 1.0)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = models.build("ba3d", **KW)
    card = models.default_card("ba3d", name="tiny", grid=GRID.to_dict(), training_age_range=[40.0, 90.0])
    path = tmp_path / "tiny.pt"
    models.save_checkpoint(path, model, card)
    return path


def _rewrite(path, edit):
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def _refused(path, *words):
    with pytest.raises(CheckpointError) as info:
        models.load_checkpoint(path, device="cpu")
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    for word in words:
        assert word in message, message
    return message


def test_a_card_without_checksum_is_refused_even_with_altered_weights(saved):
    def strip(payload):
        payload["card"].pop("checksum")
        first = next(iter(payload["state_dict"]))
        payload["state_dict"][first] = payload["state_dict"][first] + 1.0

    _refused(_rewrite(saved, strip), "has no checksum")


def test_a_card_with_checksum_null_is_refused(saved):
    _refused(_rewrite(saved, lambda p: p["card"].__setitem__("checksum", None)), "no checksum")


@pytest.mark.parametrize("field", ["task", "preprocessing", "output", "grid", "architecture_kwargs"])
def test_missing_required_fields_are_named(saved, field):
    _refused(_rewrite(saved, lambda p: p["card"].pop(field)), "missing", field)


def test_missing_preprocessing_normalisation_is_named(saved):
    _refused(_rewrite(saved, lambda p: p["card"]["preprocessing"].pop("intensity_normalisation")),
             "intensity_normalisation")


@pytest.mark.parametrize("change, words", [
    (lambda c: c.__setitem__("training_age_range", [200, 300]), ("training_age_range",)),
    (lambda c: c.__setitem__("training_age_range", [-50, -10]), ("training_age_range",)),
    (lambda c: c["preprocessing"].__setitem__("smoothing_fwhm_mm", 1e9), ("smoothing_fwhm_mm",)),
    (lambda c: c["grid"].__setitem__("shape", [100000] * 3), ("grid.shape",)),
    (lambda c: c["grid"].__setitem__("affine", [[0, 0, 0, 0]] * 3 + [[0, 0, 0, 1]]), ("grid.affine", "singular")),
    (lambda c: c["preprocessing"].__setitem__("bias_correction", "yes"), ("bias_correction",)),
    (lambda c: c.__setitem__("name", 7), ("name",)),
    (lambda c: c.__setitem__("task", "tumour"), ("task",)),
], ids=["ages-high", "ages-negative", "smoothing-1e9", "grid-huge", "grid-singular", "bool-type", "name-type", "task"])
def test_out_of_range_or_mistyped_card_fields_are_refused(saved, change, words):
    # the checksum covers the weights, not the card: editing the card keeps it valid
    _refused(_rewrite(saved, lambda p: change(p["card"])), "model card", *words)


def test_negative_channels_are_one_line_not_a_torch_traceback(saved):
    _refused(_rewrite(saved, lambda p: p["card"]["architecture_kwargs"].__setitem__("channels", [-2, 4])),
             "architecture_kwargs")


def test_huge_channels_are_refused_before_building_anything(saved):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(_rewrite(saved, lambda p: p["card"]["architecture_kwargs"].__setitem__("channels", [1024] * 4)),
             "shape differences")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # the 1024-channel model (~340 MB of weights) was never allocated


def test_the_untouched_checkpoint_still_loads(saved):
    model, card = models.load_checkpoint(saved, device="cpu")
    assert card.name == "tiny" and model.architecture == "ba3d"


def test_printable_replaces_newlines_and_ansi_escapes():
    assert printable("evil\n\x1b[31mred\x1b[0m\tname") == "evil??[31mred?[0m?name"
    assert printable("Ölçü – ok") == "Ölçü – ok"
