"""The sample-scan cache: generated once, read back afterwards, keyed so a change regenerates."""

import os

import nibabel as nib
import numpy as np
import pytest

import napari_bavis
from napari_bavis import sample_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "samples"
    monkeypatch.setenv("NAPARI_BAVIS_SAMPLE_CACHE", str(folder))
    return folder


def _image(seed=0):
    rng = np.random.default_rng(seed)
    affine = np.diag([-1.2, -1.2, 1.4, 1.0])
    affine[:3, 3] = (10.0, 20.0, -30.0)
    img = nib.Nifti1Image(rng.random((7, 8, 9)).astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    return img


def _counting(seed=0):
    calls = []

    def generate():
        calls.append(1)
        return _image(seed)

    return generate, calls


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(a.affine, b.affine)  # exact: the float64 affine is kept
    assert a.header.get_zooms() == pytest.approx(b.header.get_zooms())


def test_second_call_is_served_from_the_cache(cache):
    generate, calls = _counting()
    first = sample_cache.cached_image("s", {"a": 1}, generate)
    second = sample_cache.cached_image("s", {"a": 1}, generate)
    assert len(calls) == 1
    _same(first, second)
    _same(second, _image())
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_other_parameters_or_version_regenerate(cache, monkeypatch):
    generate, calls = _counting()
    sample_cache.cached_image("s", {"a": 1}, generate)
    sample_cache.cached_image("s", {"a": 2}, generate)
    assert len(calls) == 2
    monkeypatch.setattr(napari_bavis, "__version__", "999.0")
    sample_cache.cached_image("s", {"a": 1}, generate)
    assert len(calls) == 3


def test_a_broken_cache_file_is_regenerated(cache):
    generate, calls = _counting()
    path = sample_cache.cache_path("s", {})
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a file")
    _same(sample_cache.cached_image("s", {}, generate), _image())
    assert len(calls) == 1
    sample_cache.cached_image("s", {}, generate)
    assert len(calls) == 1  # the regenerated file replaced the broken one


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a folder this user cannot write")
def test_an_unwritable_cache_only_costs_time(cache):
    cache.mkdir()
    cache.chmod(0o500)
    try:
        generate, calls = _counting()
        _same(sample_cache.cached_image("s", {}, generate), _image())
        sample_cache.cached_image("s", {}, generate)
        assert len(calls) == 2
    finally:
        cache.chmod(0o700)


def test_phantom_sample_generates_once(cache, monkeypatch):
    import napari_bavis.phantoms as phantoms

    kinds = []

    def fake(kind):
        kinds.append(kind)
        return _image(len(kind))

    monkeypatch.setattr(phantoms, "sample_subject", fake)
    first = sample_cache.phantom_sample("young healthy")
    second = sample_cache.phantom_sample("young healthy")
    sample_cache.phantom_sample("old AD-like")
    assert kinds == ["young healthy", "old AD-like"]
    _same(first, second)


def test_unknown_phantom_is_the_generators_readable_error(cache):
    from napari_bavis.phantoms import PhantomError

    with pytest.raises(PhantomError):
        sample_cache.phantom_sample("middle-aged")



def test_two_writers_at_once_leave_one_whole_file(cache):
    """Both generate (neither finds a file), both write to their own temporary file and rename it:
    the cache ends with one readable file and no temporary ones."""
    import threading
    import time

    started = threading.Barrier(2)

    def generate():
        started.wait(timeout=10)  # both are generating at the same time
        time.sleep(0.05)
        return _image()

    results = []
    threads = [threading.Thread(target=lambda: results.append(sample_cache.cached_image("s", {}, generate)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2
    assert [p.name for p in cache.iterdir()] == [sample_cache.cache_path("s", {}).name]
    _same(sample_cache._read(sample_cache.cache_path("s", {})), _image())
