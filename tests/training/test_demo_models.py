"""The bundled demo models on a few freshly generated held-out phantoms (model-space inputs)."""

import numpy as np
import pytest
import torch

from napari_bavis import models
from napari_bavis.explain import compute_maps
from napari_bavis.phantoms import make_subject
from napari_bavis.pipeline import bundled_models, load_model
from napari_bavis.training import model_input
from napari_bavis.training.data import input_spec_from_card

#: Individuals never seen in training (training cohorts use SeedSequence-derived seeds).
SEEDS = (424242, 515151)
AGE = 72.0


@pytest.fixture(scope="module")
def demo():
    if "demo" not in bundled_models():
        pytest.fail("the bundled demo model src/napari_bavis/data/demo.pt is missing")
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def phantoms(demo):
    """The same individuals at one age, healthy and AD-like: only the disease differs."""
    _, card = demo
    spec = input_spec_from_card(card)
    out = {}
    for cdr in (0.0, 1.0, 2.0):
        subjects = [make_subject(seed, AGE, "F" if i else "M", cdr, grid=card.model_grid) for i, seed in enumerate(SEEDS)]
        out[cdr] = [(model_input(s.t1_model, card.model_grid, **spec), s.masks) for s in subjects]
    return out


def test_bundled_cards_are_complete_and_small():
    files = bundled_models()
    assert set(files) == {"demo", "demo-siamese", "ds002748"}
    assert sum(p.stat().st_size for p in files.values()) <= 25e6
    _, real = load_model("ds002748", device="cpu")
    assert real.task == "brain_age" and real.training_age_range == [19.0, 55.0]
    assert "CC0" in real.training_data and "ds002748" in real.training_data and "research" in real.intended_use
    cv = real.extra["training_metrics"]["cross_validation"]["table"]
    assert cv["model"]["mae"] < min(cv["mean"]["mae"], cv["ridge_gm_volumes"]["mae"])  # beats both baselines
    _, card = load_model("demo", device="cpu")
    assert card.name == "demo" and card.bias_correction["method"] == "regression-on-age"
    assert "not for clinical use" in card.intended_use
    _, siamese = load_model("demo-siamese", device="cpu")
    assert siamese.task == "siamese" and set(siamese.reference_embeddings) == {"healthy", "AD-like"}


def test_brain_age_gap_rises_with_disease(demo, phantoms):
    model, card = demo
    gap = {cdr: np.mean([models.predict_age(model, card, x, chronological_age=AGE).gap_corrected for x, _ in items])
           for cdr, items in phantoms.items()}
    assert gap[0.0] < gap[1.0] < gap[2.0]
    assert gap[2.0] - gap[0.0] > 3.0


def test_gradcampp_beats_chance_on_the_age_mask(demo, phantoms):
    """Share of the map's energy in the age mask exceeds the mask's share of the volume."""
    model, _ = demo
    items = [item for cdr in (0.0, 2.0) for item in phantoms[cdr]]
    x = torch.as_tensor(np.stack([xi for xi, _ in items]))[:, None]
    maps = compute_maps(model, x, methods=("gradcam++",))["gradcam++"].reshape(len(items), *x.shape[2:])
    for saliency, (_, masks) in zip(maps, items):
        inside = masks["age"]
        energy = saliency[inside].sum() / saliency.sum()
        assert energy > inside.mean()


def test_demo_samples_through_the_whole_pipeline_get_plausible_ages():
    """What a user of the demo sees: the three sample phantoms (native space, scanner pose) through
    ``pipeline.analyze`` with the bundled demo. A demo trained on grid phantoms put the 25-year-old
    at 53 y; trained through the pipeline it must order the samples and land near their ages."""
    from napari_bavis import pipeline
    from napari_bavis.phantoms.generator import SAMPLE_KINDS, sample_subject

    ages = {}
    for kind in SAMPLE_KINDS:
        result = pipeline.analyze(pipeline.as_scan(sample_subject(kind)), model="demo", methods=(),
                                  region_importance=False, faithfulness=False)
        ages[kind] = result.prediction.brain_age
    assert ages["young healthy"] < ages["old healthy"] < ages["old AD-like"], ages
    assert abs(ages["young healthy"] - SAMPLE_KINDS["young healthy"]["age"]) < 12, ages
    assert abs(ages["old healthy"] - SAMPLE_KINDS["old healthy"]["age"]) < 12, ages


def test_gradcam_points_into_the_ventricles(demo, phantoms):
    """Issue 12 item 6: the bundled demo's Grad-CAM (at the layer its card names) has its maximum in
    the ventricles (grown by one voxel) and puts at least 3x their share of the brain into them."""
    from scipy.ndimage import binary_dilation

    model, card = demo
    assert card.architecture_kwargs.get("gradcam_layer") == model.gradcam_layer
    items = [item for cdr in (0.0, 1.0, 2.0) for item in phantoms[cdr]]
    x = torch.as_tensor(np.stack([xi for xi, _ in items]))[:, None]
    maps = compute_maps(model, x, methods=("gradcam",))["gradcam"].reshape(len(items), *x.shape[2:])
    hits, ratios = [], []
    for saliency, (_, masks) in zip(maps, items):
        brain, ventricles = masks["brain"], masks["ventricles"]
        peak = np.argmax(np.where(brain, saliency, -np.inf))
        hits.append(bool((binary_dilation(ventricles) & brain).ravel()[peak]))
        positive = np.clip(saliency, 0, None)
        ratios.append((positive[ventricles].sum() / positive[brain].sum()) / (ventricles.sum() / brain.sum()))
    assert np.mean(hits) >= 0.8, hits
    assert np.mean(ratios) >= 3.0, ratios


def test_siamese_demo_gets_its_own_samples_right():
    """What ``napari-bavis compare`` says for the demo's samples (native space, through the pipeline):
    compared with the "young healthy" sample, the "old AD-like" one is nearest to the AD-like reference
    and the young one to the healthy one; the "old healthy" sample is nearest to healthy. With the
    references made on grid phantoms the AD-like sample was nearest to healthy (0.97 vs 0.73)."""
    from napari_bavis import pipeline
    from napari_bavis.models.inference import reference_similarities
    from napari_bavis.phantoms.generator import sample_subject

    pair = pipeline.compare(pipeline.as_scan(sample_subject("young healthy")),
                            pipeline.as_scan(sample_subject("old AD-like")), model="demo-siamese", methods=())
    assert pair.similarity.nearest_reference_a == "healthy", pair.similarity.reference_similarities_a
    assert pair.similarity.nearest_reference_b == "AD-like", pair.similarity.reference_similarities_b
    encoder, card = load_model("demo-siamese", device="cpu")
    old = pipeline.preprocess_scan(pipeline.as_scan(sample_subject("old healthy")), card).model_input
    nearest, sims = reference_similarities(models.embed(encoder, card, old), card.reference_embeddings)
    assert nearest == "healthy", sims
