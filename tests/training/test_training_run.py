"""A tiny training run (6 phantoms, tiny net, the demo grid): checkpoint, card, bias correction, resume."""

import numpy as np
import pytest
import torch

from napari_bavis import models
from napari_bavis.grid import Grid
from napari_bavis.training import TrainingError, split_by_subject, train_brain_age, train_siamese
from napari_bavis.training._common import resume_path

TINY = dict(n_subjects=6, grid=3.0, progress=False, channels=(2, 4, 8), batch_size=4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("phantom-cache")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("run") / "ba.pt"
    card = train_brain_age(out, epochs=1, cache_dir=cache, **TINY)
    return out, card


def test_tiny_run_writes_a_loadable_checkpoint_with_a_complete_card(first_run):
    out, returned = first_run
    model, card = models.load_checkpoint(out, device="cpu")
    assert card.checksum == returned.checksum
    assert card.task == "brain_age" and card.architecture == "ba3d"
    assert card.model_grid == Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 3.0)
    assert card.training_age_range == [20.0, 90.0]
    assert card.bias_correction["method"] in ("regression-on-age", "offset")
    assert np.isfinite([card.bias_correction["alpha"], card.bias_correction["beta"]]).all()
    assert card.sex_encoding is None  # the demo model takes no sex
    assert "not for clinical use" in card.intended_use and card.licence == "BSD-3-Clause"
    assert "6 healthy" in card.training_data and "seed 2026" in card.training_data
    assert "command:" in card.provenance and "date:" in card.provenance
    assert card.preprocessing["intensity_normalisation"] == "zscore"
    x = torch.zeros(1, 1, *card.model_grid.shape)
    assert model(x).shape == (1, 1)


def test_resume_continues_from_the_saved_epoch(first_run, cache, tmp_path):
    out, _ = first_run
    state_file = resume_path(out)
    state = torch.load(state_file, weights_only=True)
    assert state["epoch"] == 1
    # Mark the saved epoch: a resumed run keeps it, a fresh run would recompute it.
    state["history"][0]["train_loss"] = 12345.0
    torch.save(state, state_file)
    card = train_brain_age(out, epochs=2, cache_dir=cache, **TINY)
    state = torch.load(state_file, weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert state["history"][0]["train_loss"] == 12345.0
    assert card.extra["training_metrics"]["epochs"] == 2

    fresh = tmp_path / "ba.pt"
    fresh_state = resume_path(fresh)
    fresh_state.write_bytes(state_file.read_bytes())
    train_brain_age(fresh, epochs=1, cache_dir=cache, resume=False, **TINY)
    assert torch.load(fresh_state, weights_only=True)["history"][0]["train_loss"] != 12345.0


def test_resume_with_other_settings_is_refused(first_run, cache):
    out, _ = first_run
    with pytest.raises(TrainingError, match="other settings"):
        train_brain_age(out, epochs=2, cache_dir=cache, lr=0.1, **TINY)


def test_siamese_card_has_reference_embeddings_of_unit_length(cache, tmp_path):
    card = train_siamese(tmp_path / "s.pt", epochs=1, cache_dir=cache, **TINY)
    _, loaded = models.load_checkpoint(tmp_path / "s.pt", device="cpu")
    assert loaded.task == "siamese" and loaded.sex_encoding is None
    assert set(card.reference_embeddings) == {"healthy", "AD-like"}
    for vec in card.reference_embeddings.values():
        assert abs(np.linalg.norm(vec) - 1.0) < 1e-4


def test_split_is_by_subject_and_bad_arguments_fail_in_one_line(tmp_path):
    plan = [{"seed": s, "age": 30.0 + s} for s in range(20)] + [{"seed": 3, "age": 70.0}]
    train, val, test = split_by_subject(plan, seed=1)
    seeds = [{lab["seed"] for lab in part} for part in (train, val, test)]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
    assert sum(map(len, (train, val, test))) == len(plan) and len(val) >= 2
    for kwargs in ({"epochs": 0}, {"n_subjects": 2}, {"grid": "fine"}):
        with pytest.raises(TrainingError) as err:
            train_brain_age(tmp_path / "x.pt", **{"epochs": 1, **kwargs})
        assert "\n" not in str(err.value)
