"""A cohort's results: which result folders are finished, one ``results.csv`` row per scan, and the
table merged with what other runs (shards, concurrent runs into one folder) wrote."""

from __future__ import annotations

import csv
import json
import io
from pathlib import Path

from ..methods import figure_method
from ..outputs import locked
from ..summary import model_label, unique_notes
REPORT_KEYS = ("brain_age", "chronological_age", "brain_age_gap", "brain_age_gap_corrected", "regions",
               "model", "model_card_summary", "preprocessing", "versions")
RESULT_COLUMNS = ("name", "scan", "status", "brain_age", "brain_age_uncertainty", "chronological_age", "sex", "brain_age_gap",
                  "brain_age_corrected", "brain_age_gap_corrected", "out_of_range", "model", "top_region_ras_mm",
                  "top_region_volume_mm3", "warnings", "error", "seconds")


def finished_report(out_dir: Path) -> dict | None:
    """The report of a complete earlier result in ``out_dir`` (its maps present), else None."""
    try:
        report = json.loads((out_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or any(k not in report for k in REPORT_KEYS):
        return None
    maps = report.get("maps") or {}
    if not all((out_dir / f).is_file() for f in maps.values()):
        return None
    return report


def result_row(name: str, path, status: str, report: dict | None, sex=None, error=None, seconds=None) -> dict:
    row = {c: "" for c in RESULT_COLUMNS}
    row.update(name=name, scan=str(path), status=status, error=error or "",
               seconds="" if seconds is None else f"{seconds:.1f}", sex=sex or "")
    if report:
        pred = report.get("prediction") or {}
        for key in ("brain_age", "brain_age_uncertainty", "chronological_age", "brain_age_gap", "brain_age_gap_corrected"):
            value = report.get(key)
            row[key] = "" if value is None else f"{value:.2f}"
        if pred.get("brain_age_corrected") is not None:
            row["brain_age_corrected"] = f"{pred['brain_age_corrected']:.2f}"
        row["out_of_range"] = "yes" if pred.get("out_of_range_warning") else ""
        row["model"] = model_label(report.get("model") or {})
        row["warnings"] = " | ".join(unique_notes(report.get("warnings")))
        regions = report.get("regions") or {}
        shown = figure_method(regions)
        table = (regions.get(shown) or {}).get("regions") if shown else None
        if table:
            row["top_region_ras_mm"] = " ".join(f"{v:.1f}" for v in table[0]["peak_ras_mm"])
            row["top_region_volume_mm3"] = f"{table[0]['volume_mm3']:.0f}"
    return row


def write_results(csv_path: Path, rows: list[dict]) -> None:
    """Merge with rows already there (kept unless this run redid that scan), then replace atomically."""
    from ..outputs import write_bytes_atomic

    merged: dict[str, dict] = {}
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8") as handle:
                for old in csv.DictReader(handle):
                    if old.get("name"):
                        merged[old["name"]] = {c: old.get(c, "") or "" for c in RESULT_COLUMNS}
        except (OSError, csv.Error, UnicodeDecodeError):
            pass  # an unreadable old table is rebuilt from this run
    for row in rows:
        merged[row["name"]] = row
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for name in sorted(merged):
        writer.writerow(merged[name])
    write_bytes_atomic(csv_path, buffer.getvalue().encode("utf-8"))


def write_results_locked(csv_path: Path, rows: list[dict]) -> None:
    """:func:`write_results` while holding the table's lock, so concurrent runs keep each other's rows."""
    with locked(csv_path):
        write_results(csv_path, rows)
