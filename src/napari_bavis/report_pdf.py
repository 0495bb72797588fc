"""A printable report of one analysed scan: a three-page PDF drawn with matplotlib's PDF backend.

Why a module of its own: clinicians and collaborators want one page to print or attach, not a folder
of NIfTI files and JSON. Page 1 identifies the scan and the model and gives the brain age (± the
model's uncertainty), the raw and bias-corrected gap, the three-plane figure (legend, orientation
letters) and the warnings; page 2 the QC thumbnails (brain mask on the scan, registered scan against
the template), the atlas-region table and the region importance when the report has them; page 3
the model card. Every page says "research use only — not a medical device". No new dependency.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .figure import display_range
from .methods import FIGURE_PREFERENCE as _FIGURE_PREFERENCE
from .methods import title as method_title

#: Pages of every report (tests and docs rely on it).
PAGES = 3
FOOTER = "Research use only — not a medical device. Not for diagnosis or treatment decisions."
_A4 = (8.27, 11.69)


def _fmt(value, unit=" y", signed=False) -> str:
    if value is None:
        return "not given"
    return f"{value:+.1f}{unit}" if signed else f"{value:.1f}{unit}"


def _page(pdf_figure_cls, number: int, title: str):
    fig = pdf_figure_cls(figsize=_A4)
    fig.text(0.06, 0.965, title, fontsize=15, weight="bold", va="top")
    fig.text(0.5, 0.02, f"{FOOTER}   Page {number} of {PAGES}", fontsize=7.5, ha="center", color="#a00000")
    return fig


def _text_block(fig, x, y, lines, size=9.0, width=95, family=None) -> float:
    """Lines (wrapped at ``width`` characters) from (x, y) downwards; returns the y below them."""
    step = size / 72 / _A4[1] * 1.45
    for line in lines:
        for part in textwrap.wrap(str(line), width) or [""]:
            fig.text(x, y, part, fontsize=size, va="top", family=family)
            y -= step
    return y


def _planes(data, overlay, point):
    s, a, r = point
    return [("axial", data[s], None if overlay is None else overlay[s], ("L", "R", "P", "A")),
            ("coronal", data[:, a, :], None if overlay is None else overlay[:, a, :], ("L", "R", "I", "S")),
            ("sagittal", data[:, :, r], None if overlay is None else overlay[:, :, r], ("P", "A", "I", "S"))]


def _letters(ax, letters) -> None:
    left, right, bottom, top = letters
    style = {"color": "yellow", "fontsize": 9, "weight": "bold", "transform": ax.transAxes}
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)


def _three_planes(fig, rect_top: float, scan, overlay, cutoff: float, label: str) -> None:
    """Three planes (display grid S, A, R; neurological: the patient's right on the right) with letters."""
    data = np.asarray(scan.data, np.float32)
    sz, sy, sx = (float(v) for v in scan.scale)
    source = overlay if overlay is not None and np.any(overlay > 0) else data
    point = np.unravel_index(int(np.argmax(source)), source.shape)
    lo, hi = display_range(data)
    aspects = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}
    shown = None
    for i, (name, img, ov, letters) in enumerate(_planes(data, overlay, point)):
        ax = fig.add_axes((0.05 + i * 0.3, rect_top - 0.27, 0.28, 0.27), facecolor="black")
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", aspect=aspects[name], interpolation="nearest")
        if ov is not None:
            shown = ax.imshow(np.ma.masked_less_equal(ov, cutoff), cmap="inferno", vmin=0, vmax=1, origin="lower",
                              aspect=aspects[name], alpha=0.8, interpolation="nearest")
        _letters(ax, letters)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if shown is not None:
        cax = fig.add_axes((0.2, rect_top - 0.305, 0.6, 0.012))
        bar = fig.colorbar(shown, cax=cax, orientation="horizontal")
        bar.set_label(f"{label}: relevance in [0, 1], shown above {cutoff:.2f} (neurological view: "
                      "the patient's right on the right)", fontsize=8)
        bar.ax.tick_params(labelsize=7)


def _identification(report: dict, analysis) -> list[str]:
    model = report.get("model") or {}
    versions = report.get("versions") or {}
    ages = model.get("training_age_range")
    return [
        f"Scan: {report.get('scan') or analysis.scan.name}",
        f"Model: {model.get('name')} {model.get('version') or ''} ({model.get('architecture')}, "
        f"trained on ages {'-'.join(f'{a:g}' for a in ages) + ' y' if ages else 'unknown'}); "
        f"checksum {str(model.get('checksum') or 'none')[:16]}",
        f"Software: napari-bavis {versions.get('napari_bavis') or versions.get('napari-bavis') or ''}; "
        f"device {getattr(analysis, 'device', '')}",
    ]


def _results(report: dict) -> list[str]:
    unc = report.get("brain_age_uncertainty")
    pred = report.get("prediction") or {}
    lines = [f"Brain age: {_fmt(report.get('brain_age'))}" + (f" ± {unc:.1f} y (model uncertainty, SD)" if unc is not None else
                                                                " (the model gives no uncertainty)"),
             f"Chronological age: {_fmt(report.get('chronological_age'))}",
             f"Brain-age gap (brain age − age): {_fmt(report.get('brain_age_gap'), signed=True)}",
             f"Bias-corrected gap: {_fmt(report.get('brain_age_gap_corrected'), signed=True)}"
             + (f" ({report.get('correction_method') or pred.get('correction_method')})"
                if report.get("brain_age_gap_corrected") is not None
                else " (needs the chronological age)" if report.get("chronological_age") is None
                else " (the model card has no bias correction)")]
    return lines


def _qc_thumbnails(fig, top: float, analysis) -> None:
    qc = getattr(analysis, "qc", None) or {}
    data = np.asarray(analysis.scan.data, np.float32)
    axes = []
    mask = qc.get("brain mask")
    if mask is not None:
        m = np.asarray(mask.dataobj) > 0
        per_slice = m.sum(axis=(1, 2))  # the mask's axial centre of mass, without listing its voxels
        s = data.shape[0] // 2 if not per_slice.any() else int(np.round(np.average(np.arange(m.shape[0]), weights=per_slice)))
        axes.append(("brain mask (red outline) on the scan, axial", data[s], m[s].astype(float)))
    reg, tpl = qc.get("registered scan"), qc.get("template")
    if reg is not None and tpl is not None:
        r, t = np.asarray(reg.dataobj, np.float32), np.asarray(tpl.dataobj, np.float32)
        z = r.shape[2] // 2
        axes.append(("registered scan, template outline (red), axial", r[:, :, z].T, t[:, :, z].T))
    for i, (title, img, contour) in enumerate(axes):
        ax = fig.add_axes((0.06 + i * 0.46, top - 0.25, 0.42, 0.23), facecolor="black")
        ax.imshow(img, cmap="gray", origin="lower", interpolation="nearest")
        if contour is not None and np.ptp(contour) > 0:
            ax.contour(contour, levels=[0.5 * float(contour.max())], colors="red", linewidths=0.7, origin="lower")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if not axes:
        fig.text(0.06, top - 0.02, "No QC images were recorded for this scan.", fontsize=9, va="top")


def _table(fig, top: float, title: str, header, rows, note: str = "") -> float:
    fig.text(0.06, top, title, fontsize=11, weight="bold", va="top")
    if not rows:
        return _text_block(fig, 0.06, top - 0.025, [note or "not computed for this scan"], 8.5) - 0.01
    ax = fig.add_axes((0.06, top - 0.03 - 0.019 * (len(rows) + 1), 0.88, 0.019 * (len(rows) + 1)))
    ax.axis("off")
    widths = [0.4] + [0.6 / (len(header) - 1)] * (len(header) - 1)  # the region names need the room
    table = ax.table(cellText=rows, colLabels=header, colWidths=widths, loc="upper left", cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    table.scale(1, 1.0)
    return top - 0.05 - 0.019 * (len(rows) + 1)


def _region_rows(report: dict, method: str | None, limit: int = 10):
    rows = ((report.get("atlas_regions") or {}).get(method) or []) if method else []
    return [[r.get("region", ""), r.get("hemisphere") or "", f"{100 * r.get('share_of_map', 0):.1f}",
             f"{r.get('mean_value', 0):.2f}", f"{r.get('peak_value', 0):.2f}", f"{r.get('volume_mm3', 0):.0f}"]
            for r in rows[:limit]]


def _importance_rows(report: dict, limit: int = 10):
    return [[r.get("region", ""), r.get("hemisphere") or "", f"{r.get('delta_years', 0):+.2f}", f"{r.get('volume_mm3', 0):.0f}"]
            for r in (report.get("region_importance") or [])[:limit]]


def _faithfulness_lines(report: dict) -> list[str]:
    faith = report.get("faithfulness") or {}
    rows = [(m, v) for m, v in faith.items() if isinstance(v, dict) and "deletion_auc" in v]
    if not rows:
        return []
    return ["Faithfulness (deletion AUC: lower is better; insertion AUC: higher is better; vs a random ordering):"] + [
        f"  {method_title(m)}: deletion {v['deletion_auc']:.3f} (random {v.get('random_deletion_auc', float('nan')):.3f}), "
        f"insertion {v['insertion_auc']:.3f} (random {v.get('random_insertion_auc', float('nan')):.3f})" for m, v in rows]


def report_pdf_bytes(analysis, report: dict) -> bytes:
    """The report of ``analysis`` (a pipeline.Analysis) and its ``report`` dict as PDF bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    from .regions import resolve_threshold, threshold_value

    method = next((m for m in _FIGURE_PREFERENCE if m in analysis.maps), next(iter(analysis.maps), None))
    thr = report.get("threshold") or {}
    threshold, mode = resolve_threshold(thr.get("value"), thr.get("mode"))
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": f"napari-bavis brain-age report: {analysis.scan.name}",
                                    "Creator": "napari-bavis", "Subject": "research use only"}) as pdf:
        fig = _page(Figure, 1, "Brain-age report")
        y = _text_block(fig, 0.06, 0.93, _identification(report, analysis), 8.5, width=110)
        y = _text_block(fig, 0.06, y - 0.012, _results(report), 11.5, width=80)
        overlay = analysis.maps.get(method) if method else None
        cutoff = ((report.get("regions") or {}).get(method) or {}).get("cutoff")  # export measured it already
        if overlay is None:
            cutoff = 1.0
        elif cutoff is None:
            cutoff = threshold_value(overlay, threshold, mode)
        _three_planes(fig, y - 0.03, analysis.scan, overlay, cutoff, method_title(method) if method else "no map")
        warnings = report.get("warnings") or []
        y = _text_block(fig, 0.06, y - 0.38, ["Warnings:"] + ([f"• {w}" for w in warnings] or ["none"]), 9, width=100)
        _text_block(fig, 0.06, y - 0.015, _faithfulness_lines(report), 8.5, width=110)
        pdf.savefig(fig)

        fig = _page(Figure, 2, "Quality control and regions")
        _qc_thumbnails(fig, 0.93, analysis)
        y = _table(fig, 0.64, f"Atlas regions of the {method_title(method)} map ({report.get('atlas') or 'no atlas'})",
                   ["region", "side", "% of map", "mean", "peak", "mm³"], _region_rows(report, method),
                   "no atlas regions in this report")
        _table(fig, y - 0.01, "Region importance: brain age with the region occluded minus the scan's (years)",
               ["region", "side", "Δ years", "mm³"], _importance_rows(report), "region importance was not run")
        pdf.savefig(fig)

        fig = _page(Figure, 3, "Model card")
        summary = str(report.get("model_card_summary") or "no model card")
        _text_block(fig, 0.06, 0.93, summary.splitlines()[:75], 7.5, width=120, family="monospace")
        pdf.savefig(fig)
    return buffer.getvalue()


def write_report_pdf(path, analysis, report: dict) -> str:
    """Write :func:`report_pdf_bytes` atomically to ``path``."""
    from .outputs import write_bytes_atomic

    return write_bytes_atomic(Path(path), report_pdf_bytes(analysis, report))
