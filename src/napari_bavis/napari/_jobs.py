"""The jobs the widgets hand to napari_bavis.runner, as importable functions (a worker process can
only be sent a function by name). They take layer snapshots (plain data, see
_controls.snapshot), never layers or widgets, and import neither Qt nor napari.
"""

from __future__ import annotations

from .. import pipeline
from ..errors import BavisError
from ..methods import figure_method


def analyze_snapshot(snapshot, progress=None, cancel=None, regions=None, **kwargs):
    """``regions=(threshold, mode, min_size_mm3)``: also the first map's regions, which the widget
    shows first (connected components and atlas names of a 1 mm map take seconds of GUI time)."""
    from ._layers import scan_of_layer

    analysis = pipeline.analyze(scan_of_layer(snapshot), progress=progress, cancel=cancel, **kwargs)
    if regions is not None and analysis.maps:
        from ..regions import threshold_value

        threshold, mode, min_size = regions
        # each map's cut at the widget's threshold (a top-k % cut is a percentile of a 1 mm map:
        # tens of ms of GUI time per map)
        analysis.cutoffs = (float(threshold), mode, {m: float(threshold_value(v, threshold, mode))
                                                     for m, v in analysis.maps.items()})
        method = figure_method(analysis.maps) or next(iter(analysis.maps))
        cutoff = threshold_value(analysis.maps[method], threshold, mode)
        labels, table = analysis.regions(method, threshold, mode, min_size)
        analysis.first_regions = (method, float(cutoff), float(min_size), labels, table)
    if analysis.faithfulness:  # the readout panel's figure, drawn here rather than on the GUI thread
        from ..readout_figure import faithfulness_figure
        from ._layers import method_title

        analysis.faithfulness_png = faithfulness_figure(analysis.faithfulness, method_title, width_in=4.6)
    return analysis


def compare_snapshots(snapshot_a, snapshot_b, progress=None, cancel=None, **kwargs):
    from ._layers import scan_of_layer

    scan_a, scan_b = scan_of_layer(snapshot_a), scan_of_layer(snapshot_b)
    return pipeline.compare(scan_a, scan_b, progress=progress, cancel=cancel, **kwargs)


def inspect_model(model, progress=None, cancel=None):
    """(card or error, whether CUDA exists): read in the worker, so torch never loads in the viewer."""
    try:
        _, card = pipeline.load_model(model, device="cpu")
        status, value = "ok", card
    except BavisError as err:
        status, value = "error", err
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:
        cuda = False
    return status, value, cuda
