"""pipeline_references: refuses what is not a Siamese encoder; the bundled demo-siamese's card says
its references were made through the pipeline (behaviour: test_demo_models' samples test)."""

import pytest

from napari_bavis.pipeline import bundled_models, load_model
from napari_bavis.training.data import TrainingError
from napari_bavis.training.siamese_references import pipeline_references


def test_a_brain_age_model_is_refused_in_one_line(tmp_path):
    with pytest.raises(TrainingError) as err:
        pipeline_references(bundled_models()["demo"], tmp_path / "out.pt")
    assert "\n" not in str(err.value) and "not a Siamese" in str(err.value)
    assert not (tmp_path / "out.pt").exists()


def test_the_bundled_card_says_how_its_references_were_made():
    _, card = load_model("demo-siamese", device="cpu")
    assert "reference embeddings recomputed on pipeline inputs" in card.training_data
    ref = card.extra["training_metrics"]["reference_subjects"]
    assert ref["n"] == ref["healthy"] + ref["AD-like"] and min(ref["healthy"], ref["AD-like"]) > 0
