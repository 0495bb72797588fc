"""Header limits before decompressing, intensity range, orientation, file kinds (issue 14)."""

from __future__ import annotations

import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from napari_bavis import limits
from napari_bavis.errors import BavisError, ScanError
from napari_bavis.io import load_scan
from napari_bavis.preprocess.bias import n4_correct
from napari_bavis.preprocess.orient import validated_volume

from hostile_scans import _head, write_gzip_bomb, write_hostile_scans


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_hostile_scans(tmp_path_factory.mktemp("hostile"), bomb=False)


@pytest.mark.parametrize("key", ["float32-max", "slope-huge", "no-orientation", "pixdim-0", "pixdim-nan",
                                 "claims-10000", "truncated-nii", "datatype-1", "dev-zero", "fifo"])
def test_hostile_file_is_one_readable_line_and_nothing_on_stderr(corpus, key, capfd):
    if key not in corpus:
        pytest.skip(f"{key}: not available on this system")
    path, words = corpus[key]
    start = time.perf_counter()
    with pytest.raises(ScanError) as info:
        load_scan(path)
    message = str(info.value)
    assert words in message and message.startswith(path.name) and "\n" not in message and len(message) < 260
    assert time.perf_counter() - start < 5
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""  # nibabel's own log lines do not leak


def test_negative_only_scan_is_viewable_but_refused_by_preprocessing(corpus):
    scan = load_scan(corpus["negative-only"][0])
    assert scan.data.max() <= 0
    with pytest.raises(ScanError, match="no positive intensities"):
        validated_volume(scan.source_image())


def test_n4_on_a_negative_only_array_is_one_line_not_an_index_error():
    with pytest.raises(BavisError, match="no positive intensities"):
        n4_correct(-_head(), np.diag([2.0, 2.0, 2.0, 1.0]))


def test_field_of_view_is_checked_in_millimetres(corpus):
    path, _ = corpus["anisotropic"]
    img = nib.load(path)
    data, _ = validated_volume(img)  # 0.5x0.5x8 mm over a whole head: 186x224x192 mm
    assert data.shape == (372, 448, 24)
    with pytest.raises(ScanError, match=r"too small \(40x40x40 voxels, 20x20x20 mm"):
        validated_volume(nib.Nifti1Image(_head((40, 40, 40)), np.diag([0.5, 0.5, 0.5, 1.0])))
    with pytest.raises(ScanError, match="larger than"):
        limits.check_field_of_view((100, 100, 100), (30.0, 30.0, 30.0))


def test_values_within_the_range_still_load(tmp_path):
    path = tmp_path / "bright.nii.gz"
    nib.save(nib.Nifti1Image(_head() * np.float32(1e9), np.diag([2.0, 2.0, 2.0, 1.0])), path)
    assert load_scan(path).data.max() > 1e11


def test_sform_only_or_qform_only_headers_are_accepted(tmp_path):
    from hostile_scans import _patch_header, _save

    for codes in ({"sform_code": 0, "qform_code": 1}, {"sform_code": 2, "qform_code": 0}):
        path = _patch_header(_save(tmp_path / f"s{codes['sform_code']}.nii.gz", _head()), **codes)
        assert load_scan(path).data.shape  # the other code still orients it


@pytest.mark.parametrize("side, words, max_gb", [(768, "768×768×768 voxels", 0.5), (512, "no signal", 1.5)])
def test_gzip_bomb_is_refused_in_bounded_memory_and_time(tmp_path, side, words, max_gb):
    """768³ is refused from its header; 512³ (the limit) is decompressed and refused for having no signal."""
    bomb = write_gzip_bomb(tmp_path / "bomb.nii.gz", side)
    assert bomb.stat().st_size < 5e6
    # peak memory of this process only: VmHWM starts afresh at exec, while ru_maxrss keeps the parent's
    # peak across fork+exec on Linux (a full pytest run's 2.3 GB showed up as the child's)
    code = ("import time, sys\n"
            "from napari_bavis.io import load_scan\n"
            "t = time.perf_counter()\n"
            "try:\n    load_scan(sys.argv[1])\nexcept Exception as err:\n    print(err)\n"
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
            "print(time.perf_counter() - t, hwm)\n")
    done = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 2, (done.stdout, done.stderr[-2000:])
    message, numbers = done.stdout.strip().splitlines()
    seconds, maxrss_kb = (float(v) for v in numbers.split())
    assert words in message
    assert seconds < 60 and maxrss_kb < max_gb * 1e6, (seconds, maxrss_kb)  # far under 3 GB (machine shared)
    assert done.stderr == "", done.stderr[-2000:]
