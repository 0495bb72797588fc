"""What a result folder is: every map as NIfTI in the scan file's space, a three-plane PNG, the
faithfulness figure, the printable report.pdf and report.json, written into a temporary folder that
replaces the target only when everything is there (a killed run never leaves half results).

The one home of the folder's layout and the report's keys; ``pipeline`` computes, this module writes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import __version__
from .errors import BavisError
from .io import Scan
from .methods import figure_method
from .methods import file_stem as _method_file
from .methods import title as method_title
from .regions import activated_regions, resolve_threshold, threshold_value
from .summary import analysis_title, unique_notes

if TYPE_CHECKING:
    from .pipeline import Analysis, Comparison


def _card_dict(card) -> dict:
    return card.to_dict() if hasattr(card, "to_dict") else dict(card)


def versions() -> dict:
    import nibabel
    import scipy
    import SimpleITK
    import torch

    out = {
        "napari-bavis": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "nibabel": nibabel.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }
    try:
        import nilearn

        out["nilearn"] = nilearn.__version__
    except ImportError:  # pragma: no cover - a hard dependency
        pass
    return out


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def card_summary(card) -> dict:
    d = _card_dict(card)
    keys = ("name", "version", "architecture", "task", "input_kind", "output", "training_age_range",
            "bias_correction", "training_data", "licence", "intended_use", "checksum", "source", "input_space")
    return {k: d.get(k) for k in keys}


def _prepare_dir(out_dir: Path, protect: Sequence) -> Path:
    """A fresh temporary folder beside ``out_dir``; renamed over it only when everything is written."""
    for p in protect:
        if p and Path(p).resolve().is_relative_to(out_dir.resolve()) and out_dir.exists():
            raise BavisError(f"{out_dir}: holds an input scan; choose another output folder")
    from .outputs import mkdtemp_shared  # the folder is renamed into place: mkdtemp's 0700 would stay

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(mkdtemp_shared(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))


@contextmanager
def result_folder(out_dir: Path, protect: Sequence):
    """A temporary folder beside ``out_dir`` to write into; it replaces ``out_dir`` when the block ends
    normally and is removed when it raises (a killed or failed export never leaves half results)."""
    tmp = _prepare_dir(out_dir, protect)
    try:
        yield tmp
        _commit_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit_dir(tmp: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, old / "previous")
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


def _write_maps(folder: Path, scan: Scan, maps: dict, prefix: str, threshold, mode, min_size_mm3, protect,
                while_writing=None, source_image=None, name_regions=None):
    """Each map as NIfTI in the scan file's space (``source_image(method)``, default the display map put
    back with ``scan.to_source``), and its regions table; returns (files, regions)."""
    from concurrent.futures import ThreadPoolExecutor

    from .io import write_nifti

    if source_image is None:
        def source_image(method):
            return scan.to_source(maps[method])

    files, regions = {}, {}
    # The NIfTI writes run in threads (gzip releases the GIL) while the regions are measured.
    with ThreadPoolExecutor(max_workers=2) as pool:
        writes = []
        for method, values in maps.items():
            name = f"map_{prefix}{_method_file(method)}.nii.gz"
            writes.append(pool.submit(lambda n=name, m=method: write_nifti(folder / n, source_image(m), protect=protect)))
            files[method] = name
        for method, values in maps.items():
            cutoff = threshold_value(values, threshold, mode)
            labels, table = activated_regions(values, scan.display_affine, cutoff, min_size_mm3)
            if name_regions is not None:
                table = name_regions(labels, table)
            regions[method] = {"cutoff": cutoff, "regions": [r.to_dict() for r in table]}
        if while_writing is not None:  # the figures and the PDF: drawn while the maps are compressed
            while_writing(files, regions)
        for write in writes:
            write.result()  # re-raise a failed write here
    return files, regions


def _write_figure(path: Path, scan: Scan, maps: dict, threshold, mode, title: str, method: str | None = None,
                  cutoffs: dict | None = None) -> None:
    """Three planes through the strongest voxel of ``method`` (default: the thesis's final map, if computed);
    ``cutoffs``: each map's cut already measured (a top-k % cut is a percentile of the whole map)."""
    from .figure import three_plane_figure
    from .outputs import write_bytes_atomic

    shown = method or figure_method(maps)
    cutoff = threshold
    if shown:
        cutoff = (cutoffs or {}).get(shown)
        cutoff = threshold_value(maps[shown], threshold, mode) if cutoff is None else cutoff
    png = three_plane_figure(
        scan.data, scan.scale, maps.get(shown) if shown else None,
        cutoff=cutoff,
        title=title + (f" — {method_title(shown)}" if shown else ""), overlay_label=method_title(shown) if shown else "",
    )
    write_bytes_atomic(path, png)


def export_analysis(
    analysis: Analysis,
    out_dir,
    threshold: float | None = None,
    mode: str | None = None,
    min_size_mm3: float = 50.0,
    figure_method: str | None = None,
    pdf: bool = True,
) -> dict:
    """Write every map (NIfTI, the scan file's space), a three-plane PNG, report.json and (``pdf``) the
    printable report.pdf into ``out_dir``.

    All files go to a temporary folder first, which replaces ``out_dir`` at the end, so a killed
    run never leaves half results. Returns the report dict. Default cut: the top 5 % of each map;
    a ``threshold`` without ``mode`` is a map value (regions.resolve_threshold).
    """
    from .outputs import write_bytes_atomic

    threshold, mode = resolve_threshold(threshold, mode)
    out_dir = Path(out_dir)
    with result_folder(out_dir, [analysis.scan.path]) as tmp:
        title = analysis_title(analysis.scan.name, analysis.prediction)
        report: dict = {}

        def draw(files, regions):
            # Matplotlib holds the interpreter while the NIfTI writes (gzip, SimpleITK resampling) in
            # their threads mostly do not: drawn here, the figures and the PDF run beside them.
            _write_figure(tmp / "figure.png", analysis.scan, analysis.maps, threshold, mode, title, figure_method,
                          cutoffs={m: r["cutoff"] for m, r in regions.items()})
            report.update(analysis_report(analysis, threshold, mode, regions, files))
            if analysis.faithfulness:  # each map's deletion/insertion curves (readout_figure.py)
                from .readout_figure import faithfulness_figure

                write_bytes_atomic(tmp / "faithfulness.png", faithfulness_figure(analysis.faithfulness))
                report["faithfulness_figure"] = "faithfulness.png"
            if pdf:  # the printable report (report_pdf.py)
                from .report_pdf import write_report_pdf

                report["report_pdf"] = "report.pdf"
                write_report_pdf(tmp / "report.pdf", analysis, report)

        _write_maps(tmp, analysis.scan, analysis.maps, "", threshold, mode, min_size_mm3, (analysis.scan.path,),
                    source_image=analysis.map_image, name_regions=analysis.name_regions, while_writing=draw)
        write_bytes_atomic(tmp / "report.json", json.dumps(report, indent=2).encode())
    return report


def analysis_report(analysis: Analysis, threshold, mode, regions, files) -> dict:
    pred = analysis.prediction.to_dict() if analysis.prediction is not None else {}
    return _jsonable({
        "scan": analysis.scan.path or analysis.scan.name,
        "brain_age": pred.get("brain_age"),
        "brain_age_uncertainty": pred.get("uncertainty"),
        "chronological_age": pred.get("chronological_age"),
        "brain_age_gap": pred.get("gap"),
        "brain_age_gap_corrected": pred.get("gap_corrected"),
        "correction_method": pred.get("correction_method"),
        "warnings": unique_notes(analysis.notes),
        "prediction": pred,
        "threshold": {"value": threshold, "mode": mode},
        "maps": files,
        "regions": regions,
        "atlas": analysis.atlas,
        "atlas_regions": analysis.atlas_regions,
        "region_importance": analysis.region_importance,
        "faithfulness": analysis.faithfulness,
        "sanity_check": analysis.sanity_check,
        "model": card_summary(analysis.card),
        "model_card_summary": analysis.card.summary() if hasattr(analysis.card, "summary") else "",
        "preprocessing": analysis.record.get("preprocessing", {}),
        "versions": analysis.record.get("versions", {}),
        "timings_s": analysis.timings,
        "record": analysis.record,
        "research_use_only": True,
    })


def export_comparison(
    comparison: Comparison,
    out_dir,
    threshold: float = 0.3,
    mode: str = "value",
    min_size_mm3: float = 50.0,
) -> dict:
    """Write each scan's maps (NIfTI, that scan file's space), one three-plane PNG per scan and
    report.json into ``out_dir``, through a temporary folder renamed at the end. Returns the report."""
    from .outputs import write_bytes_atomic

    out_dir = Path(out_dir)
    inputs = (comparison.scan_a.path, comparison.scan_b.path)
    with result_folder(out_dir, inputs) as tmp:
        files: dict = {}
        regions: dict = {}
        figures = {}
        for side, scan, maps in (("a", comparison.scan_a, comparison.maps_a), ("b", comparison.scan_b, comparison.maps_b)):
            files[side], regions[side] = _write_maps(tmp, scan, maps, f"{side}_", threshold, mode, min_size_mm3, inputs)
            _write_figure(tmp / f"figure_{side}.png", scan, maps, threshold, mode, f"scan {side.upper()}: {scan.name}")
            figures[side] = f"figure_{side}.png"
        sim = comparison.similarity.to_dict() if hasattr(comparison.similarity, "to_dict") else comparison.similarity
        report = _jsonable({
            "scan_a": comparison.scan_a.path or comparison.scan_a.name,
            "scan_b": comparison.scan_b.path or comparison.scan_b.name,
            "similarity": sim,
            "warnings": comparison.notes,
            "threshold": {"value": threshold, "mode": mode},
            "maps": files,
            "figures": figures,
            "regions": regions,
            "model": card_summary(comparison.card),
            "model_card_summary": comparison.card.summary() if hasattr(comparison.card, "summary") else "",
            "timings_s": comparison.timings,
            "record": comparison.record,
            "versions": comparison.record.get("versions", {}),
            "research_use_only": True,
        })
        write_bytes_atomic(tmp / "report.json", json.dumps(report, indent=2).encode())
    return report
