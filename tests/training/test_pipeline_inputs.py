"""Training inputs made the way a user's scan is made: a native-space phantom through ``preprocess``.

The bundled demo models are trained on these (a demo trained on grid phantoms put a 25-year-old
native phantom at 53 y); the test checks that the cached input is exactly what the pipeline gives
the same phantom, that the cache is reused, and that it is not the grid shortcut.
"""

import numpy as np

from napari_bavis import pipeline
from napari_bavis.phantoms import make_subject
from napari_bavis.training.data import COARSE_GRID, DEMO_INPUT, load_inputs, model_input, pipeline_card

LABELS = {"seed": 31, "age": 47.0, "sex": "F", "cdr": 0.0}


def test_pipeline_inputs_equal_what_analyze_feeds_the_model_and_are_cached(tmp_path):
    xs, records = load_inputs([LABELS], COARSE_GRID, DEMO_INPUT, tmp_path, through_pipeline=True, keep_masks=True)
    subject = make_subject(LABELS["seed"], LABELS["age"], LABELS["sex"], LABELS["cdr"], grid=COARSE_GRID, native=True)
    pre = pipeline.preprocess_scan(pipeline.as_scan(subject.t1_native), pipeline_card(COARSE_GRID, DEMO_INPUT))
    np.testing.assert_allclose(xs[0], pre.model_input, atol=1e-5)
    assert records[0].masks["brain"].shape == COARSE_GRID.shape and records[0].masks["brain"].any()

    (cached,) = list(tmp_path.glob("pipe-*.npz"))
    stamp = cached.stat().st_mtime_ns
    again, _ = load_inputs([LABELS], COARSE_GRID, DEMO_INPUT, tmp_path, through_pipeline=True)
    assert cached.stat().st_mtime_ns == stamp  # read from the cache, not made again
    np.testing.assert_array_equal(again, xs)

    shortcut = model_input(records[0].t1, COARSE_GRID, **DEMO_INPUT)
    assert np.abs(shortcut - xs[0]).mean() > 0.01  # registration and resampling leave their mark
