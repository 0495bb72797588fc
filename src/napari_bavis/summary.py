"""One wording of a result for every place that shows it: the widget's result text, the figure
title, the CLI's per-scan line, results.csv and report.json.

Kept in one module so the brain age reads the same everywhere ("brain age 43.2 ± 1.1 y"), the
model used is always named with its version, a warning raised by two steps is shown once, and a
failing scan gets one ``<path>: <reason>`` line (``failure_line``) wherever it fails.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

from .errors import BavisError
from .outputs import os_error_text


def unique_notes(*groups: Iterable[str | None]) -> list[str]:
    """The warnings of several sources in order, each once (empty entries dropped)."""
    out: list[str] = []
    for group in groups:
        for note in group or ():
            text = " ".join(str(note).split()) if note else ""
            if text and text not in out:
                out.append(text)
    return out


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def brain_age_text(brain_age: float, uncertainty: float | None = None, unit: str = "y") -> str:
    """``43.2 ± 1.1 y``; without a (finite) uncertainty just ``43.2 y``."""
    text = f"{brain_age:.1f}"
    if _finite(uncertainty):
        text += f" ± {uncertainty:.1f}"
    return f"{text} {unit}" if unit else text


def model_label(card) -> str:
    """``name version`` of a model card, a card dict or report.json's ``model`` entry."""
    get = card.get if isinstance(card, dict) else lambda key: getattr(card, key, None)
    return " ".join(str(v) for v in (get("name"), get("version")) if v) or "unknown model"


def corrected_gap_text(gap_corrected, method) -> str:
    """The bias-corrected gap with its method (``bias-corrected +9.6 y, offset method``), or in a few
    words why there is none; for places that print a raw gap (so the chronological age is known)."""
    if not _finite(gap_corrected):
        return "no bias correction in the model card"
    return f"bias-corrected {float(gap_corrected):+.1f} y, {method or 'unrecorded'} method"


def analysis_title(scan_name: str, prediction) -> str:
    """The figure's title: the scan, its brain age ± uncertainty and, when given, age and both gaps."""
    if prediction is None:
        return scan_name
    title = f"{scan_name} — brain age {brain_age_text(prediction.brain_age, prediction.uncertainty)}"
    if prediction.chronological_age is not None:
        corrected = corrected_gap_text(prediction.gap_corrected, prediction.correction_method)
        title += f" (chronological {prediction.chronological_age:.1f} y, gap {prediction.gap:+.1f} y; {corrected})"
    return title


def report_line(report: dict) -> str:
    """The CLI's line for one finished scan, from its report.json: ages, model used, warnings."""
    parts = []
    if report.get("brain_age") is not None:
        parts.append("brain age " + brain_age_text(report["brain_age"], report.get("brain_age_uncertainty")))
    if report.get("chronological_age") is not None:
        corrected = corrected_gap_text(report.get("brain_age_gap_corrected"), report.get("correction_method"))
        parts.append(f"chronological {report['chronological_age']:.1f} y, gap {report['brain_age_gap']:+.1f} y "
                     f"({corrected})")
    parts.append("model " + model_label(report.get("model") or {}))
    warnings = report.get("warnings") or []
    if warnings:
        parts.append(f"{len(warnings)} warning{'s' if len(warnings) > 1 else ''}: " + " | ".join(warnings))
    return "; ".join(parts)


_WRITE_ERRNOS = (28, 122, 13, 1, 30)  # ENOSPC, EDQUOT, EACCES, EPERM, EROFS: said in words, not as an internal error


def one_line(text: str) -> str:
    """One line, safe for a terminal (a model name's newline or ANSI escape is shown as ``?``)."""
    from .models.card_checks import printable

    return printable(" ".join(str(text).split()), limit=10_000)


def failure_reason(err: BaseException, path=None) -> str:
    """Why a scan failed, in one line: a BavisError's own words (without a leading ``<path>: ``), a
    full or read-only disk in words, anything else as an internal error (never a traceback)."""
    if isinstance(err, BavisError):
        reason = one_line(err)
        for prefix in ((f"{Path(str(path)).name}: ", f"{path}: ") if path is not None else ()):
            if reason.startswith(prefix):
                reason = reason[len(prefix):]
        return reason
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        return f"cannot write its results: {os_error_text(err)}"
    return f"internal error: {type(err).__name__}: {one_line(err) or 'no message'}"


def failure_line(path, err: BaseException) -> str:
    """``<path>: <reason>``: the one stderr line of a failing scan (never a traceback)."""
    return f"{path}: {failure_reason(err, path)}"
