"""BIDS-App group level: collate the participant results into one table, correct the bias, compare groups.

Why: the brain-age gap is read across a cohort (brainageR's collate step, the thesis's CDR × sex
means), and the usual regression-to-the-mean bias is removed with a line fitted on healthy controls
only (Beheshti et al. 2019): ``brain age = a·age + b`` on the fitting group, then for everyone
``corrected gap = brain age − (a·age + b)``. Writes into ``OUTPUT_DIR/group/``: ``brainage.tsv``,
``gap_by_group.tsv``, mean maps per group in MNI space and ``summary.png`` / ``summary.pdf``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .bids import SPACE, BidsError, find_bids_scans, method_label

_OWN = ("participant_id", "age", "sex", "gender")


def collect(bids_dir, out_dir) -> list[dict]:
    """One row per finished scan (``*_brainage.json``), in scan order, with participants.tsv's columns."""
    from ..summary import unique_notes
    from .bids import finished_report

    rows = []
    for scan in find_bids_scans(bids_dir):
        report = finished_report(scan, out_dir)
        if report is None:
            continue
        row = {"participant": f"sub-{scan.subject}", "session": f"ses-{scan.session}" if scan.session else "",
               "scan": scan.prefix, "age": scan.age, "sex": scan.sex or ""}
        row.update({k: v for k, v in scan.row.items() if k not in _OWN})
        row.update(brain_age=report.get("brain_age"), brain_age_uncertainty=report.get("brain_age_uncertainty"),
                   # against the table's age (participants.tsv / sessions.tsv now), not the one the report was made with
                   brain_age_gap=(report["brain_age"] - scan.age if scan.age is not None and report.get("brain_age") is not None
                                  else report.get("brain_age_gap")),
                   brain_age_gap_model_corrected=report.get("brain_age_gap_corrected"),
                   brain_age_corrected=None, brain_age_gap_corrected=None,  # set by apply_correction
                   model=f"{(report.get('model') or {}).get('name')} {(report.get('model') or {}).get('version')}",
                   warnings=" | ".join(unique_notes(report.get("warnings"))),
                   _maps_mni={m: scan.anat_dir(out_dir) / f for m, f in (report.get("maps_mni") or {}).items()})
        rows.append(row)
    if not rows:
        raise BidsError(f"{out_dir}: no finished participant results; run the participant level first")
    return rows


def _matches(row, column: str, value: str) -> bool:
    return value.lower() == "all" or str(row.get(column, "")).strip().lower() == value.strip().lower()


def fit_correction(rows, column: str, value: str) -> dict:
    """``brain age = slope·age + intercept`` on the rows whose ``column`` is ``value`` ("all": every row)."""
    fit = [(float(r["age"]), float(r["brain_age"])) for r in rows
           if _matches(r, column, value) and r.get("age") is not None and r.get("brain_age") is not None]
    if len(fit) < 2 or len({a for a, _ in fit}) < 2:
        raise BidsError(f"--fit-correction-on {value}: needs at least 2 scans with different ages where "
                        f"{column} is {value!r}; {len(fit)} found")
    ages, brain = np.array(fit).T
    slope, intercept = np.polyfit(ages, brain, 1)
    return {"column": column, "value": value, "n": len(fit), "slope": float(slope), "intercept": float(intercept),
            "method": "linear fit of brain age on age in the fitting group (Beheshti et al. 2019)"}


def apply_correction(rows, fit: dict) -> None:
    for r in rows:
        if r.get("age") is None or r.get("brain_age") is None:
            r["brain_age_corrected"] = r["brain_age_gap_corrected"] = None
            continue
        expected = fit["slope"] * float(r["age"]) + fit["intercept"]
        r["brain_age_gap_corrected"] = float(r["brain_age"]) - expected
        r["brain_age_corrected"] = float(r["age"]) + r["brain_age_gap_corrected"]


def _stats(values) -> tuple:
    v = [float(x) for x in values if x is not None]
    if not v:
        return 0, None, None
    return len(v), float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None


def gap_by_group(rows, column: str) -> list[dict]:
    """Mean, SD and n of the raw and the corrected gap per value of ``column`` (all rows: "all")."""
    groups = sorted({str(r.get(column) or "n/a") for r in rows}) if any(column in r for r in rows) else []
    out = []
    for g in groups + ["all"]:
        members = rows if g == "all" else [r for r in rows if str(r.get(column) or "n/a") == g]
        n, mean, sd = _stats(r.get("brain_age_gap") for r in members)
        _, cmean, csd = _stats(r.get("brain_age_gap_corrected") for r in members)
        out.append({column: g, "n": n, "gap_mean": mean, "gap_sd": sd, "gap_corrected_mean": cmean, "gap_corrected_sd": csd})
    return out


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{round(value, 2) + 0.0:.2f}"  # never "-0.00"
    return str(value)


def write_tsv(path: Path, rows: list[dict]) -> None:
    from ..outputs import write_bytes_atomic

    columns = [c for c in rows[0] if not c.startswith("_")] if rows else []
    for r in rows:
        columns += [c for c in r if c not in columns and not c.startswith("_")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    write_bytes_atomic(path, buffer.getvalue().encode())


def _mean_image(paths):
    """Voxel-wise mean of NIfTI files on one grid, summed one at a time (a large cohort fits in memory)."""
    import nibabel as nib

    first = nib.load(paths[0])
    total = np.zeros(first.shape, np.float64)
    for p in paths:
        total += np.asarray(nib.load(p).dataobj, np.float32)
    return nib.Nifti1Image((total / len(paths)).astype(np.float32), first.affine)


def mean_maps(rows, column: str, folder: Path) -> dict:
    """Voxel-wise mean of every map in MNI space per group, per group and sex (the thesis's CDR × sex
    means) and of all scans: ``group/<col>-<value>[_sex-F]_space-..._desc-<m>_mean.nii.gz``.
    Returns {group (or "group F"): {method: file name}}."""
    from ..io import write_nifti

    def value(r):
        return str(r.get(column) or "n/a")

    written = {}
    groups = sorted({value(r) for r in rows})
    subsets = [(g, None, [r for r in rows if value(r) == g]) for g in groups] + [("all", None, rows)]
    subsets += [(g, sex, [r for r in rows if value(r) == g and r.get("sex") == sex]) for g in groups for sex in ("F", "M")]
    methods = sorted({m for r in rows for m in r["_maps_mni"]})
    for g, sex, members in subsets:
        for m in methods:
            paths = [r["_maps_mni"][m] for r in members if m in r["_maps_mni"]]
            if not paths:
                continue
            label = f"{column if g != 'all' else 'group'}-{method_label(g) or 'na'}" + (f"_sex-{sex}" if sex else "")
            name = f"{label}_space-{SPACE}_desc-{method_label(m)}_mean.nii.gz"
            write_nifti(folder / name, _mean_image(paths))
            written.setdefault(f"{g} {sex}" if sex else g, {})[m] = name
    return written


def run_group(bids_dir, out_dir, column: str = "group", fit_on: str | None = None, fit_column: str | None = None) -> dict:
    """The whole group level; returns {"rows", "stats", "fit", "files"}. ``fit_on``: the value of
    ``fit_column`` (default ``column``) whose scans fit the bias correction ("all": every scan; None:
    the controls if ``column`` has a value ``control``/``controls``/``hc``, else every scan)."""
    from ..outputs import write_bytes_atomic
    from .summary_figure import summary_figure

    out = Path(out_dir) / "group"
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(bids_dir, out_dir)
    fit_column = fit_column or column
    if fit_on is None:
        values = {str(r.get(fit_column, "")).lower() for r in rows}
        fit_on = next((v for v in ("control", "controls", "hc", "healthy") if v in values), "all")
    fit = fit_correction(rows, fit_column, fit_on)
    apply_correction(rows, fit)
    stats = gap_by_group(rows, column)
    write_tsv(out / "brainage.tsv", rows)
    write_tsv(out / "gap_by_group.tsv", stats)
    maps = mean_maps(rows, column, out)
    write_bytes_atomic(out / "correction.json", json.dumps(fit, indent=2).encode())
    png, pdf = summary_figure(rows, stats, column, fit, maps, out)
    write_bytes_atomic(out / "summary.png", png)
    write_bytes_atomic(out / "summary.pdf", pdf)
    return {"rows": rows, "stats": stats, "fit": fit, "maps": maps,
            "files": ["brainage.tsv", "gap_by_group.tsv", "correction.json", "summary.png", "summary.pdf"]}


def stats_lines(stats: list[dict], column: str) -> list[str]:
    """The gap by group as printed lines."""
    def f(v):
        return "n/a" if v is None else f"{round(v, 2) + 0.0:+.2f}"

    def sd(v):
        return "n/a" if v is None else f"{v:.2f}"

    return [f"{column} {s[column]}: n={s['n']}, gap {f(s['gap_mean'])} ± {sd(s['gap_sd'])} y, "
            f"corrected {f(s['gap_corrected_mean'])} ± {sd(s['gap_corrected_sd'])} y" for s in stats]
