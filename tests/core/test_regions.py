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


def _reference_regions(values, affine, cutoff, min_size_mm3):
    """Brute force with scipy: each component's size, share, value-weighted centroid and first
    strongest voxel (C order), as the table should give them."""
    from scipy import ndimage

    labels, n = ndimage.label(values > cutoff, structure=np.ones((3, 3, 3)))
    voxel = abs(np.linalg.det(affine[:3, :3]))
    total = values[values > 0].sum()
    rows = []
    for k in range(1, n + 1):
        idx = np.argwhere(labels == k)  # C order
        v = values[labels == k]
        if len(idx) * voxel < min_size_mm3:
            continue
        peak = idx[int(np.argmax(v))]
        centroid = (idx * v[:, None]).sum(0) / v.sum()
        ras = lambda ijk: tuple(affine[:3, :3] @ ijk + affine[:3, 3])  # noqa: E731
        rows.append((v.sum() / total, len(idx) * voxel, float(v.max()), ras(peak), ras(centroid), labels == k))
    return sorted(rows, key=lambda r: -r[0])


def test_regions_match_a_brute_force_reference_on_an_offset_box_with_ties():
    rng = np.random.default_rng(3)
    values = np.zeros((30, 40, 35), np.float32)
    values[5:22, 12:37, 9:30] = np.round(rng.random((17, 25, 21)), 1)  # ties at every value; box off the origin
    affine = np.diag([1.5, 0.9, 1.2, 1.0])
    affine[:3, 3] = (-20.0, 7.0, 3.0)
    labels, table = activated_regions(values, affine, 0.75, min_size_mm3=3.0)
    reference = _reference_regions(values, affine, 0.75, 3.0)
    assert len(table) == len(reference) > 3
    for region, (share, volume, peak, peak_ras, centroid_ras, where) in zip(table, reference):
        assert region.share_of_map == pytest.approx(share, rel=1e-5)
        assert region.volume_mm3 == pytest.approx(volume)
        assert region.peak_value == pytest.approx(peak)
        assert region.peak_ras_mm == pytest.approx(tuple(round(x, 2) for x in peak_ras), abs=0.006)
        assert region.centroid_ras_mm == pytest.approx(tuple(round(x, 2) for x in centroid_ras), abs=0.006)
        assert np.array_equal(labels == region.label, where)
    assert labels.shape == values.shape and labels.dtype == np.int32
    assert not labels[values <= 0.75].any()


def test_no_voxel_above_the_cut_gives_an_empty_table_and_label_image():
    labels, table = activated_regions(np.full((6, 7, 8), 0.2, np.float32), np.eye(4), 0.5)
    assert table == [] and labels.shape == (6, 7, 8) and not labels.any()
