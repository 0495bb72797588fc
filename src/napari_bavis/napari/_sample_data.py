"""npe2 sample data, generated locally (no download)."""

from __future__ import annotations

from ..io import scan_from_image
from ..samples import mni_t1, synthetic_native_scan
from ._reader import orient_current_viewer, scan_layer_data


def mni152_t1():
    scan = scan_from_image(mni_t1(1))
    orient_current_viewer()
    return [scan_layer_data(scan, name="MNI152 T1 1 mm")]


def synthetic_native():
    scan = scan_from_image(synthetic_native_scan())
    orient_current_viewer()
    return [scan_layer_data(scan, name="synthetic scan (native space)")]


def _phantom(kind: str):
    from ..phantoms import sample_subject

    scan = scan_from_image(sample_subject(kind))
    orient_current_viewer()
    return [scan_layer_data(scan, name=f"phantom {kind}")]


def young_healthy():
    return _phantom("young healthy")


def old_healthy():
    return _phantom("old healthy")


def old_ad_like():
    return _phantom("old AD-like")
