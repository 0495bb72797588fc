import numpy as np
import pytest

from napari_bavis.regions import activated_regions, threshold_value


def two_blobs():
    values = np.zeros((20, 20, 20), np.float32)
    values[2:5, 2:5, 2:5] = 0.5  # 27 voxels, sum 13.5
    values[10:14, 10:14, 10:14] = 0.8  # 64 voxels, sum 51.2
    values[12, 12, 12] = 1.0
    values[18, 18, 18] = 0.9  # one isolated voxel
    return values


def test_regions_are_measured_in_millimetres_and_sorted_by_share():
    affine = np.diag([2.0, 1.5, 1.0, 1.0])
    affine[:3, 3] = (-10, 20, 5)
    labels, table = activated_regions(two_blobs(), affine, cutoff=0.3)
    assert [r.label for r in table] == [1, 2, 3]
    big, small, single = table
    voxel = 2.0 * 1.5 * 1.0
    assert big.volume_mm3 == pytest.approx(64 * voxel)
    assert small.volume_mm3 == pytest.approx(27 * voxel)
    assert big.peak_value == pytest.approx(1.0)
    assert big.peak_ras_mm == pytest.approx((-10 + 24, 20 + 18, 5 + 12))
    total = 13.5 + 51.2 + 0.2 + 0.9
    assert big.share_of_map == pytest.approx((51.2 + 0.2) / total, rel=1e-5)
    assert single.volume_mm3 == pytest.approx(voxel)
    assert (labels == 1).sum() == 64 and labels.max() == 3


def test_min_size_drops_small_components_and_high_cutoff_keeps_only_peaks():
    _, table = activated_regions(two_blobs(), np.eye(4), cutoff=0.3, min_size_mm3=10)
    assert [r.volume_mm3 for r in table] == [64, 27]
    labels, table = activated_regions(two_blobs(), np.eye(4), cutoff=0.85)
    assert sorted(r.volume_mm3 for r in table) == [1, 1]
    _, none = activated_regions(np.zeros((5, 5, 5)), np.eye(4), cutoff=0.3)
    assert none == []


def test_top_percent_threshold_keeps_that_share_of_the_support():
    values = np.linspace(0, 1, 1001, dtype=np.float32)  # 1000 positive voxels
    cutoff = threshold_value(values, 10, mode="top_percent")
    assert (values > cutoff).sum() == pytest.approx(100, abs=1)
    assert threshold_value(values, 0.3) == 0.3
    with pytest.raises(ValueError):
        threshold_value(values, 1.5)
    with pytest.raises(ValueError):
        threshold_value(values, 0.3, mode="bogus")
