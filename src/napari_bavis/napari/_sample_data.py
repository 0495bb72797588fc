"""npe2 sample data, generated locally (no download) and cached after the first open (sample_cache.py)."""

from __future__ import annotations

from ..io import scan_from_image
from ..sample_cache import phantom_sample, synthetic_native_sample
from ..samples import mni_t1
from ._reader import orient_current_viewer, scan_layer_data


def mni152_t1():
    scan = scan_from_image(mni_t1(1))
    orient_current_viewer()
    return [scan_layer_data(scan, name="MNI152 T1 1 mm")]


def synthetic_native():
    scan = scan_from_image(synthetic_native_sample())
    orient_current_viewer()
    return [scan_layer_data(scan, name="synthetic scan (native space)")]


def _phantom(kind: str):
    scan = scan_from_image(phantom_sample(kind))
    orient_current_viewer()
    return [scan_layer_data(scan, name=f"phantom {kind}")]


def young_healthy():
    return _phantom("young healthy")


def old_healthy():
    return _phantom("old healthy")


def old_ad_like():
    return _phantom("old AD-like")
