"""Presets: a released plain state_dict (DataParallel layout) -> a napari-bavis checkpoint with a full card;
a bin head's age, SD and edge warning."""

import numpy as np
import pytest
import torch

from napari_bavis import cli, models
from napari_bavis.errors import CheckpointError
from napari_bavis.models.bins import BinHead, distribution, edge_warning
from napari_bavis.models.presets import file_sha256
from napari_bavis.models.sfcn import SFCN

SMALL = {"channel_number": [2, 2, 2, 2, 2, 2]}


def released_layout(path, channel_number=None, seed=0):
    """A randomly initialised SFCN saved as Peng et al. distribute theirs: nn.DataParallel's state_dict."""
    torch.manual_seed(seed)
    net = SFCN(channel_number=channel_number) if channel_number else SFCN()
    torch.save(torch.nn.DataParallel(net).state_dict(), path)
    return path


def test_cli_import_writes_a_checkpoint_with_the_full_card(tmp_path, capsys):
    weights = released_layout(tmp_path / "run_20190719_00_epoch_best_mae.p")
    out = tmp_path / "sfcn-ukb.pt"
    assert cli.main(["models", "import", str(weights), "--preset", "sfcn-ukb", "--out", str(out)]) == 0
    assert "sfcn-ukb" in capsys.readouterr().out
    model, card = models.load_checkpoint(out, device="cpu")
    src = card.source
    assert src["sha256"] == file_sha256(weights) and src["file"] == weights.name and src["preset"] == "sfcn-ukb"
    assert "Peng" in src["paper"] and "UK Biobank" in src["population"] and src["age_range_years"] == [42.0, 82.0]
    assert card.licence.startswith("MIT") and card.training_age_range == [42.0, 82.0]
    assert card.input_space["storage"] == "LAS" and card.input_space["crop"]["start"] == [11, 13, 11]
    assert card.output["head"]["count"] == 40 and card.preprocessing["intensity_normalisation"] == "mean"
    released = torch.load(weights, weights_only=True)
    mine = model.state_dict()
    assert all(torch.equal(released[k], mine[k.removeprefix("module.")]) for k in released)
    assert cli.main(["models", str(out)]) == 0
    assert "sha256" in capsys.readouterr().out


def test_python_import_equals_cli_import(tmp_path):
    weights = released_layout(tmp_path / "w.p", SMALL["channel_number"])
    card = models.import_weights(weights, "sfcn-ukb", tmp_path / "a.pt", architecture_kwargs=SMALL)
    assert card.checksum == models.load_checkpoint(tmp_path / "a.pt", device="cpu")[1].checksum


def test_plain_state_dict_without_preset_is_refused_in_one_line_naming_the_presets(tmp_path, capsys):
    weights = released_layout(tmp_path / "w.p", SMALL["channel_number"])
    with pytest.raises(CheckpointError, match="sfcn-ukb") as err:
        models.load_checkpoint(weights, device="cpu")
    assert "\n" not in str(err.value) and "models import" in str(err.value)
    assert cli.main(["models", str(weights)]) != 0
    line = capsys.readouterr().err.strip()
    assert "sfcn-ukb" in line and "\n" not in line and "Traceback" not in line


def test_import_refuses_unknown_presets_wrong_weights_and_overwriting(tmp_path, capsys):
    weights = released_layout(tmp_path / "w.p", SMALL["channel_number"])
    assert cli.main(["models", "import", str(weights), "--preset", "nope", "--out", str(tmp_path / "x.pt")]) != 0
    assert "presets: sfcn-ukb" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="shape differences"):  # small weights are not the released SFCN
        models.import_weights(weights, "sfcn-ukb", tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="replace the weights"):
        models.import_weights(weights, "sfcn-ukb", weights)
    assert not (tmp_path / "x.pt").exists()


def test_bin_head_age_sd_and_edge_warning():
    head = BinHead(42.0, 1.0, 40)
    p = np.zeros(40)
    p[[20, 22]] = 0.5  # centres 62.5 and 64.5
    age, sd, _ = distribution(head, np.log(np.where(p > 0, p, 1e-300)))
    assert age == pytest.approx(63.5) and sd == pytest.approx(1.0)
    assert edge_warning(head, age, p) is None
    end = np.zeros(40)
    end[-1] = 1.0
    assert "near the end" in edge_warning(head, 81.5, end)


def _small_sfcn_with_bias(bin_index):
    model, card = models.build("sfcn", **SMALL), models.preset_card("sfcn-ukb", architecture_kwargs=SMALL)
    conv = model.classifier.conv_6
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(0.0)
        conv.bias[bin_index] = 3.0
        conv.bias[bin_index + 1] = 3.0
    return model.eval(), card.validate()


def test_predict_age_reports_the_distribution_sd_and_warns_near_the_ends():
    x = np.ones((160, 192, 160), np.float32)
    model, card = _small_sfcn_with_bias(18)
    pred = models.predict_age(model, card, x, chronological_age=60.0)
    p = np.exp(np.full(40, 0.0) + np.where(np.isin(np.arange(40), [18, 19]), 3.0, 0.0))
    p /= p.sum()
    centres = 42.5 + np.arange(40)
    assert pred.brain_age == pytest.approx(float(p @ centres), abs=1e-4)
    assert pred.uncertainty == pytest.approx(float(np.sqrt(p @ (centres - p @ centres) ** 2)), abs=1e-4)
    assert pred.out_of_range_warning is None
    model, card = _small_sfcn_with_bias(38)
    assert "near the end" in models.predict_age(model, card, x).out_of_range_warning
