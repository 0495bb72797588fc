"""cohort.prefetch: the first scan read in a thread is handed over once, read errors surface in
the job that asks (as load_scan's own ScanError), and other paths are read as usual."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_bavis.cohort.prefetch import ScanPrefetch
from napari_bavis.errors import ScanError


def _scan_file(path, value=100.0):
    data = np.zeros((20, 22, 18), np.float32)
    data[4:16, 5:17, 3:15] = value
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def test_prefetched_scan_is_handed_over_once_then_read_again(tmp_path):
    path = _scan_file(tmp_path / "a.nii.gz")
    prefetch = ScanPrefetch(path)
    first = prefetch.load(path)
    assert first.data.shape == (18, 22, 20) and float(first.data.max()) == 100.0  # display axes S, A, R
    second = prefetch.load(path)
    assert second is not first and np.array_equal(second.data, first.data)


def test_another_path_is_read_directly(tmp_path):
    a, b = _scan_file(tmp_path / "a.nii.gz"), _scan_file(tmp_path / "b.nii.gz", value=7.0)
    prefetch = ScanPrefetch(a)
    assert float(prefetch.load(b).data.max()) == 7.0
    assert float(prefetch.load(a).data.max()) == 100.0


def test_a_bad_file_fails_in_the_job_with_its_own_line(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    prefetch = ScanPrefetch(bad)
    with pytest.raises(ScanError, match="broken.nii.gz"):
        prefetch.load(bad)
