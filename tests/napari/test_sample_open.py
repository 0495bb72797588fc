"""File › Open Sample › napari-bavis reads generated samples back from the cache (sample_cache.py)."""

import numpy as np
import pytest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_BAVIS_SAMPLE_CACHE", str(tmp_path / "samples"))
    return tmp_path / "samples"


def test_napari_sample_functions_use_the_cache(cache, monkeypatch):
    import nibabel as nib

    from napari_bavis import samples
    from napari_bavis.napari import _sample_data

    calls = []

    def generate():
        calls.append(1)
        return nib.Nifti1Image(np.arange(7 * 8 * 9, dtype=np.float32).reshape(7, 8, 9), np.diag([-1.2, -1.2, 1.4, 1]))

    monkeypatch.setattr(samples, "synthetic_native_scan", generate)
    monkeypatch.setattr(_sample_data, "orient_current_viewer", lambda: None)
    first = _sample_data.synthetic_native()
    second = _sample_data.synthetic_native()
    assert len(calls) == 1
    np.testing.assert_array_equal(first[0][0], second[0][0])
    assert first[0][1]["scale"] == second[0][1]["scale"]
