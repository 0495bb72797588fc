"""The one path from a scan to results and back onto the scan; the widgets and the CLI both call it.

``analyze``: scan -> preprocessing (to the model's space, as its card says) -> brain age ->
explanation maps on the model grid -> the same maps on the scan's own grid.
``compare``: the same for a Siamese encoder and two scans, one map per scan.
``export_analysis`` / ``export_comparison`` (in ``export.py``, re-exported here) write maps (NIfTI in the
scan's file space), figures, report.pdf and report.json, atomically, never over an input.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .atlases import DEFAULT_ATLAS
from .errors import BavisError, Cancelled, CheckpointError
from .io import Scan, load_scan, scan_from_image
from .regions import activated_regions, resolve_threshold, threshold_value
from .summary import unique_notes
from .onto_scan import _display_brain_mask, _maps_on_grid, _maps_on_scan, _qc_images, _source_geometry  # noqa: F401

# The method table (names, titles, defaults, figure order) lives in methods.py; its names are
# re-exported here for callers of the pipeline.
from .methods import ALL_METHODS, DEFAULT_METHODS, FIGURE_PREFERENCE, SIAMESE_METHODS

#: Bundled models, shipped as package data: the phantom demos and the real-brain model.
BUNDLED = {"demo": "demo.pt", "demo-siamese": "demo-siamese.pt", "ds002748": "ds002748.pt"}
#: The brain-age model a user gets without choosing one (analyze, the CLI, the widget, settings):
#: trained on real adult brains (OpenNeuro ds002748), unlike ``demo``, which only knows phantoms.
DEFAULT_MODEL = "ds002748"

Progress = Callable[[str, int, int], None]


def bundled_models() -> dict[str, Path]:
    """Names of the models shipped with the package and their files (only those present)."""
    data = Path(__file__).parent / "data"
    return {name: data / file for name, file in BUNDLED.items() if (data / file).is_file()}


def load_model(model, device: str = "auto"):
    """(module, card) from a bundled name, a checkpoint path, or an already loaded (module, card) pair."""
    from .models import ModelCard, load_checkpoint

    if isinstance(model, tuple) and len(model) == 2:
        module, card = model
        return module, card if isinstance(card, ModelCard) else ModelCard.from_dict(card)
    if isinstance(model, str) and model in BUNDLED:
        path = bundled_models().get(model)
        if path is None:
            raise CheckpointError(f"the bundled model {model!r} is not installed with this copy of napari-bavis "
                                  f"({BUNDLED[model]} is missing): choose another model or a checkpoint file")
        return load_checkpoint(path, device=device)
    return load_checkpoint(Path(model), device=device)


def as_scan(scan) -> Scan:
    if isinstance(scan, Scan):
        return scan
    if isinstance(scan, (str, os.PathLike)):
        return load_scan(scan)
    if hasattr(scan, "affine") and hasattr(scan, "dataobj"):
        return scan_from_image(scan)
    raise BavisError(f"cannot analyse a {type(scan).__name__}: give a file path, a nibabel image or a Scan")


class _Steps:
    """Progress and cancellation between steps, and each step's wall time."""

    def __init__(self, progress: Progress | None, cancel, total: int):
        self.progress, self.cancel, self.total, self.done = progress, cancel, total, 0
        self.timings: dict[str, float] = {}
        self._current: str | None = None
        self._start = 0.0

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled by the user")

    def start(self, name: str) -> None:
        self.finish()
        self.check()
        self._current, self._start = name, time.perf_counter()
        if self.progress is not None:
            self.progress(name, self.done, self.total)

    def finish(self) -> None:
        if self._current is not None:
            self.timings[self._current] = round(time.perf_counter() - self._start, 3)
            self.done += 1
            self._current = None

    def preprocess_progress(self, prefix: str):
        """Forward preprocess's own steps as ours (they start, time and cancel the same way)."""

        def forward(step: str, index: int, total: int) -> None:
            if step == "done":
                return
            if self.total < self.done + (total - index) + 3:
                self.total = self.done + (total - index) + 3
            self.start(f"{prefix}{step}")

        return forward


@dataclass
class Analysis:
    scan: Scan
    card: object  # models.ModelCard
    prediction: object | None  # models.AgePrediction
    maps: dict[str, np.ndarray]  # on the scan's display grid, in [0, 1]
    maps_model: dict[str, np.ndarray]  # on the model grid
    qc: dict  # name -> nibabel image: "brain mask" (display grid), "registered scan", "template" (model grid)
    timings: dict[str, float]
    record: dict
    device: str
    notes: list[str] = field(default_factory=list)
    #: (model grid affine, template->scan matrix, brain mask on the file's grid or None): lets an oblique
    #: scan's maps go from the model grid straight onto the file's grid (one interpolation, not two).
    source_geometry: tuple | None = None
    #: issue 12 (explain/clinical.py): the atlas used, maps by atlas region, occlusion in years, faithfulness
    atlas: str | None = None
    atlas_regions: dict = field(default_factory=dict)
    region_importance: list | None = None
    faithfulness: dict = field(default_factory=dict)
    sanity_check: dict | None = None

    def map_image(self, method: str):
        """A map as a NIfTI image in the scan file's own voxel grid and affine."""
        from .io import nifti_like

        if self.scan.resampled and self.source_geometry is not None and method in self.maps_model:
            grid_affine, template_to_scan, inside = self.source_geometry
            values = _maps_on_grid({method: self.maps_model[method]}, grid_affine, template_to_scan,
                                   self.scan.source_shape, self.scan.source_affine, inside)[method]
            return nifti_like(values, self.scan.source_affine, self.scan.header)
        return self.scan.to_source(self.maps[method])

    def regions(self, method: str, threshold: float | None = None, mode: str | None = None,
                min_size_mm3: float = 50.0):
        """Activated regions of a map, atlas-named; default cut: the top 5 % (regions.resolve_threshold)."""
        threshold, mode = resolve_threshold(threshold, mode)
        cutoff = threshold_value(self.maps[method], threshold, mode)
        labels, table = activated_regions(self.maps[method], self.scan.display_affine, cutoff, min_size_mm3)
        return labels, self.name_regions(labels, table)

    def name_regions(self, labels, table):
        """Connected regions on the display grid named after the atlas region they overlap most."""
        from .explain.clinical import name_regions

        geometry = self.source_geometry
        return name_regions(labels, table, self.scan.display_affine, geometry[1] if geometry else None, self.atlas)


@dataclass
class Comparison:
    scan_a: Scan
    scan_b: Scan
    card: object
    similarity: object  # models.Similarity
    maps_a: dict[str, np.ndarray]
    maps_b: dict[str, np.ndarray]
    timings: dict[str, float]
    record: dict
    device: str
    notes: list[str] = field(default_factory=list)


def _card_dict(card) -> dict:
    return card.to_dict() if hasattr(card, "to_dict") else dict(card)


def _sex_tensor(card, sex, device):
    from .models.inference import _sex_tensor

    return _sex_tensor(sex, card, device) if card.sex_encoding is not None else None


def preprocess_scan(scan: Scan, card, progress=None, cancel=None):
    """A scan preprocessed as ``card`` asks, from the file's own voxels (never the interpolated
    display grid of an oblique scan). The one way in for analysis, comparison and training."""
    from .preprocess import PreprocessSpec, preprocess

    spec = PreprocessSpec.from_card(_card_dict(card))
    return preprocess(scan.source_image(), spec, progress=progress, cancel=cancel)


def _preprocess_scan(scan: Scan, card, steps: _Steps, prefix: str = ""):
    return preprocess_scan(scan, card, progress=steps.preprocess_progress(prefix), cancel=steps.cancel)


def _hookable(model) -> bool:
    from .models import TorchScriptModel

    return not isinstance(model, TorchScriptModel)


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods or ())
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise BavisError(f"unknown map method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    return methods


def _qc_warnings(pre) -> list[str]:
    """Preprocessing's QC warnings (head size, weak registration, brain mask volume, brain-extraction
    fallback, …): recorded in ``pre.qc`` and shown with the result, never left only in the record."""
    return [str(w) for w in (getattr(pre, "qc", None) or {}).get("warnings") or () if w]


def analyze(
    scan,
    model=DEFAULT_MODEL,
    chronological_age: float | None = None,
    sex: str | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    device: str = "auto",
    progress: Progress | None = None,
    cancel=None,
    restrict_to_brain: bool = True,
    atlas: str | None = DEFAULT_ATLAS,
    region_importance: bool | None = None,
    faithfulness: bool | None = None,
    sanity_check: bool = False,
    **explain_options,
) -> Analysis:
    """Brain age and explanation maps of one scan (path, nibabel image or Scan).

    ``progress(step, done, total)`` is called as each step starts; ``cancel`` (anything with
    ``is_set()``) is checked between steps and raises :class:`Cancelled`. ``restrict_to_brain``
    zeroes the maps outside the brain mask on the scan (the model grid's box holds skull and air too).
    ``atlas`` names regions (``atlases.ATLASES``; None: none); ``region_importance`` and
    ``faithfulness``: True, False or None (run when they take at most 10 s, docs/explain.md);
    ``sanity_check``: the model-randomisation test of the maps (explain/sanity.py).
    """
    import torch

    from .explain import compute_maps
    from .models import predict_age

    methods = _check_methods(methods)
    steps = _Steps(progress, cancel, total=8)
    steps.start("load scan")
    scan = as_scan(scan)
    steps.start("load model")
    module, card = load_model(model, device)
    if card.task != "brain_age":
        raise BavisError(f"{card.name} is a {card.task} model: use compare() with two scans")
    dev = next(module.parameters(), torch.empty(0)).device

    pre = _preprocess_scan(scan, card, steps, "preprocess: ")
    steps.start("predict brain age")
    prediction = predict_age(module, card, pre.model_input, sex=sex, chronological_age=chronological_age)
    # everything a user must see before trusting the number: the file, the preprocessing QC, the ages
    notes = unique_notes(scan.warnings, _qc_warnings(pre), [prediction.out_of_range_warning])

    maps_model: dict[str, np.ndarray] = {}
    if methods and not _hookable(module):
        notes.append("maps need a hookable PyTorch module; a TorchScript file gives the brain age only")
    elif methods:
        steps.start("explanation maps")
        x = torch.as_tensor(pre.model_input, dtype=torch.float32, device=dev)[None, None]
        s = _sex_tensor(card, sex, dev)
        inputs = (x, s) if s is not None else x
        maps_model = compute_maps(module, inputs, methods=methods, **explain_options)
    from .explain.clinical import readout

    steps.total += 3
    hookable = _hookable(module)
    extra = readout(module if hookable else None, card, pre, maps_model, _sex_tensor(card, sex, dev) if hookable else None,
                    atlas, region_importance, faithfulness, start=steps.start, check=steps.check)
    sanity = None
    if sanity_check and maps_model:
        from .explain.sanity import model_randomisation

        steps.start("sanity check")
        sanity = model_randomisation(module, inputs, methods, **explain_options)
    steps.start("maps onto the scan")
    display_mask = _display_brain_mask(pre, scan)
    maps = _maps_on_scan(pre, scan, maps_model, display_mask if restrict_to_brain else None)
    steps.finish()
    if progress is not None:
        progress("done", steps.total, steps.total)
    timings = {**steps.timings}
    record = {
        "preprocessing": getattr(pre, "record", {}),
        "preprocessing_qc": _jsonable(getattr(pre, "qc", {})),
        "methods": list(methods),
        "maps_restricted_to_brain_mask": bool(restrict_to_brain and getattr(pre, "brain_mask", None) is not None),
        "explain_options": _jsonable(explain_options),
        "explanation_checks": _jsonable(extra.record),
        "device": str(dev),
        "versions": versions(),
    }
    return Analysis(
        scan=scan, card=card, prediction=prediction, maps=maps, maps_model=maps_model,
        qc=_qc_images(pre, display_mask, scan), timings=timings, record=record, device=str(dev), notes=notes,
        source_geometry=_source_geometry(pre, restrict_to_brain), atlas=atlas if atlas else None,
        atlas_regions=extra.atlas_regions, region_importance=extra.region_importance,
        faithfulness=extra.faithfulness, sanity_check=sanity,
    )


def compare(
    scan_a,
    scan_b,
    model="demo-siamese",
    methods: Sequence[str] = DEFAULT_METHODS,
    device: str = "auto",
    progress: Progress | None = None,
    cancel=None,
    restrict_to_brain: bool = True,
    age_a: float | None = None,
    age_b: float | None = None,
    **explain_options,
) -> Comparison:
    """Similarity of two scans under a Siamese encoder, with one map per scan from its own branch.
    ``age_a`` / ``age_b``: chronological ages, optional; one outside the model's training range is a note."""
    import torch

    from .explain import siamese_maps
    from .models import compare as similarity_of
    from .models.inference import compare_age_warning

    methods = tuple(m for m in _check_methods(methods) if m in SIAMESE_METHODS)
    steps = _Steps(progress, cancel, total=14)
    steps.start("load scans")
    scan_a, scan_b = as_scan(scan_a), as_scan(scan_b)
    steps.start("load model")
    module, card = load_model(model, device)
    if card.task != "siamese":
        raise BavisError(f"{card.name} is a {card.task} model: comparing two scans needs a Siamese model")
    age_notes = [compare_age_warning(card, age, label) for age, label in ((age_a, "scan A"), (age_b, "scan B"))]
    dev = next(module.parameters(), torch.empty(0)).device
    pre_a = _preprocess_scan(scan_a, card, steps, "scan A: ")
    pre_b = _preprocess_scan(scan_b, card, steps, "scan B: ")
    steps.start("similarity")
    similarity = similarity_of(module, card, pre_a.model_input, pre_b.model_input)
    maps_a: dict = {}
    maps_b: dict = {}
    if methods and _hookable(module):
        steps.start("explanation maps")
        a = torch.as_tensor(pre_a.model_input, dtype=torch.float32, device=dev)[None, None]
        b = torch.as_tensor(pre_b.model_input, dtype=torch.float32, device=dev)[None, None]
        model_a, model_b, _ = siamese_maps(module, a, b, methods=methods, **explain_options)
        steps.start("maps onto the scans")
        maps_a = _maps_on_scan(pre_a, scan_a, model_a, _display_brain_mask(pre_a, scan_a) if restrict_to_brain else None)
        maps_b = _maps_on_scan(pre_b, scan_b, model_b, _display_brain_mask(pre_b, scan_b) if restrict_to_brain else None)
    steps.finish()
    if progress is not None:
        progress("done", steps.total, steps.total)
    record = {
        "preprocessing_a": getattr(pre_a, "record", {}),
        "preprocessing_b": getattr(pre_b, "record", {}),
        "methods": list(methods),
        "chronological_ages": {"a": age_a, "b": age_b},
        "device": str(dev),
        "versions": versions(),
    }
    notes = unique_notes(age_notes, scan_a.warnings, scan_b.warnings, [f"scan A: {w}" for w in _qc_warnings(pre_a)],
                         [f"scan B: {w}" for w in _qc_warnings(pre_b)])
    return Comparison(scan_a, scan_b, card, similarity, maps_a, maps_b, dict(steps.timings), record, str(dev),
                      notes=notes)


# Writing results lives in export.py (the one place that knows what a result folder is); these names
# stay importable from the pipeline, where callers have always found them.
from .export import (  # noqa: E402
    _jsonable, analysis_report, card_summary, export_analysis, export_comparison, versions,
)

__all__ = ["ALL_METHODS", "BUNDLED", "DEFAULT_METHODS", "DEFAULT_MODEL", "FIGURE_PREFERENCE", "Analysis", "Comparison",
           "analysis_report", "analyze", "as_scan", "bundled_models", "card_summary", "compare", "export_analysis",
           "export_comparison", "load_model", "preprocess_scan", "versions"]
