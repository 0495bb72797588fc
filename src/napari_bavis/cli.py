"""``napari-bavis``: the widgets' analysis over one scan or a cohort, with no display.

Every subcommand calls :mod:`napari_bavis.pipeline` (no second implementation). Exit codes:
0 all good, 1 at least one scan failed, 2 usage errors (bad arguments, unknown model or device,
an unreadable covariates table, an output folder that would collide with an input), 130 when
interrupted. Each failing scan gets exactly one ``<path>: <reason>`` line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import BavisError
from .io import NIFTI_SUFFIXES
from .outputs import OutputError, check_writable_dir, claim, clean_stale_parts, is_disk_full, locked, os_error_text
from .summary import model_label, report_line, unique_notes

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: report.json keys the issue promises; a report without them is treated as unfinished.
REPORT_KEYS = ("brain_age", "chronological_age", "brain_age_gap", "brain_age_gap_corrected", "regions",
               "model", "model_card_summary", "preprocessing", "versions")
RESULT_COLUMNS = ("name", "scan", "status", "brain_age", "brain_age_uncertainty", "chronological_age", "sex", "brain_age_gap",
                  "brain_age_corrected", "brain_age_gap_corrected", "out_of_range", "model", "top_region_ras_mm",
                  "top_region_volume_mm3", "warnings", "error", "seconds")
_KEY_COLUMNS = ("file", "filename", "file_name", "path", "scan", "scan_name", "name", "subject", "id")
_AGE_COLUMNS = ("age", "chronological_age", "age_years")
_SEX_COLUMNS = ("sex", "gender")
_SEXES = {"f": "F", "female": "F", "m": "M", "male": "M"}
_WRITE_ERRNOS = (28, 122, 13, 1, 30)  # ENOSPC, EDQUOT, EACCES, EPERM, EROFS: said in words, not as an internal error


class UsageError(Exception):
    """A problem with the command line itself: reported as ``napari-bavis: error: ...``, exit 2."""


# --- small helpers ------------------------------------------------------------------------------

def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    """One line, safe for a terminal (a model name's newline or ANSI escape is shown as ``?``)."""
    from .models.card_checks import printable

    return printable(" ".join(str(text).split()), limit=10_000)


def failure_line(path, err: BaseException) -> str:
    """``<path>: <reason>``: the one stderr line of a failing scan (never a traceback)."""
    if isinstance(err, BavisError):
        reason = _one_line(err)
        for prefix in (f"{Path(str(path)).name}: ", f"{path}: "):
            if reason.startswith(prefix):
                reason = reason[len(prefix):]
    elif isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        reason = f"cannot write its results: {os_error_text(err)}"
    else:
        reason = f"internal error: {type(err).__name__}: {_one_line(err) or 'no message'}"
    return f"{path}: {reason}"


def _progress_bars_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _tqdm(**kwargs):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


# --- finding scans -----------------------------------------------------------------------------

def find_scans(paths: Sequence, exclude=None) -> list[Path]:
    """Files as given plus every file the reader opens (io.NIFTI_SUFFIXES: .nii, .nii.gz, .mgz) under
    folders (recursively), sorted, without duplicates.

    Result folders under ``exclude`` (the output folder: its sub-folders holding a report.json) and
    hidden files or folders (``.part`` folders of unfinished results) are never taken as inputs, so
    a second run over a folder that holds its own results does not analyse its maps, and ``--out``
    may be the input folder itself.
    """
    from .io import is_scan_path

    exclude = Path(exclude).resolve() if exclude is not None else None
    found: dict[Path, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in p.rglob("*"):
                # not only regular files: a FIFO or a link to a device named *.nii fails with its own line
                if is_scan_path(f.name) and not any(part.startswith(".") for part in f.relative_to(p).parts) and not f.is_dir():
                    resolved = f.resolve()
                    if exclude is not None and _in_result_folder(resolved, exclude):
                        continue
                    found.setdefault(resolved, f)
        elif p.exists() or is_scan_path(p):
            found.setdefault(p.resolve(), p)  # a given file is analysed (or fails) whatever its suffix
        else:
            found.setdefault(p.resolve(), p)  # missing: fails with one line like any bad scan
    return [found[k] for k in sorted(found, key=str)]


def _in_result_folder(resolved: Path, out: Path) -> bool:
    """True for files inside ``out/<folder>/`` where that folder is a result (or hidden)."""
    if not resolved.is_relative_to(out):
        return False
    parts = resolved.relative_to(out).parts
    return len(parts) > 1 and (parts[0].startswith(".") or (out / parts[0] / "report.json").is_file())


def output_names(scans: Sequence[Path]) -> list[str]:
    """One folder name per scan: its scan name, or name-<hash of the path> where two scans share one.

    Computed over the whole (sorted) list before sharding, so every shard agrees.
    """
    from .io import scan_name

    names = [scan_name(p) or "scan" for p in scans]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out = []
    for p, n in zip(scans, names):
        if counts[n] > 1:
            n = f"{n}-{hashlib.sha1(str(Path(p).resolve()).encode()).hexdigest()[:8]}"
        out.append(n)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` (1 <= i <= n) -> (i, n)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard must look like i/n (e.g. 3/10), not {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 1 <= i <= n")
    return i, n


def shard_indices(count: int, shard: tuple[int, int] | None) -> list[int]:
    """Positions in the sorted scan list that shard i of n processes (round robin: balanced, disjoint)."""
    if shard is None:
        return list(range(count))
    i, n = shard
    return list(range(i - 1, count, n))


# --- covariates --------------------------------------------------------------------------------

@dataclass
class Covariates:
    age: float | None = None
    sex: str | None = None


def _parse_sex(value: str, where: str) -> str | None:
    v = value.strip().lower()
    if not v:
        return None
    if v not in _SEXES:
        raise UsageError(f"{where}: sex {value!r} is not F or M")
    return _SEXES[v]


def _parse_age(value: str, where: str) -> float | None:
    v = value.strip()
    if not v:
        return None
    try:
        age = float(v)
    except ValueError:
        raise UsageError(f"{where}: age {value!r} is not a number") from None
    if not 0 <= age < 150:
        raise UsageError(f"{where}: age {age:g} is not a plausible age in years")
    return age


def read_covariates(path) -> dict[str, Covariates]:
    """CSV (or TSV) with a header naming a file/scan column and age and/or sex columns.

    Keys are file names (with suffix), scan names (without) and the values as written, so a row
    matches a scan by any of them.
    """
    from .io import scan_name

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--covariates {p}: cannot read it ({_one_line(err)})") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UsageError(f"--covariates {p}: the file is empty")
    header = [h.strip().lower() for h in rows[0]]
    key_col = next((header.index(c) for c in _KEY_COLUMNS if c in header), None)
    age_col = next((header.index(c) for c in _AGE_COLUMNS if c in header), None)
    sex_col = next((header.index(c) for c in _SEX_COLUMNS if c in header), None)
    if key_col is None or (age_col is None and sex_col is None):
        raise UsageError(
            f"--covariates {p}: unknown column layout {rows[0]}; expected a header with a file column "
            f"({'/'.join(_KEY_COLUMNS[:2])} or scan) and age and/or sex columns"
        )
    table: dict[str, Covariates] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        where = f"--covariates {p.name} line {line_no}"
        row = row + [""] * (len(header) - len(row))
        key = row[key_col].strip()
        if not key:
            raise UsageError(f"{where}: the file column is empty")
        cov = Covariates(
            age=_parse_age(row[age_col], where) if age_col is not None else None,
            sex=_parse_sex(row[sex_col], where) if sex_col is not None else None,
        )
        for k in {key, Path(key).name, scan_name(key)}:
            table[k] = cov
    return table


def covariates_for(scan: Path, table: dict[str, Covariates]) -> Covariates | None:
    from .io import scan_name

    for k in (str(scan), scan.name, scan_name(scan)):
        if k in table:
            return table[k]
    return None


# --- per-scan work (also run inside worker processes) -----------------------------------------

@dataclass
class Job:
    index: int
    path: str
    out_dir: str
    age: float | None
    sex: str | None
    methods: tuple
    threshold: float
    mode: str
    force: bool = False
    started: float = 0.0  # wall-clock start of the run: older .part folders of this scan are stale
    explain: dict = field(default_factory=dict)  # analyze's atlas / region_importance / faithfulness / sanity_check


@dataclass
class Outcome:
    index: int
    status: str  # "done" | "failed" | "skipped" (finished meanwhile) | "busy" (another run has it) | "cancelled"
    error: str | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def run_job(job: Job, model, device: str, progress=None) -> Outcome:
    """Analyse and export one scan; every error becomes the outcome's one line."""
    from . import pipeline
    from .io import load_scan

    start = time.perf_counter()
    try:
        out_dir = Path(job.out_dir)
        with claim(out_dir.parent, out_dir.name) as mine:  # two runs into one --out share the scans
            if not mine:
                return Outcome(job.index, "busy")
            clean_stale_parts(out_dir.parent, out_dir.name, before=job.started)  # a killed run's leftovers
            if not job.force and finished_report(out_dir) is not None:
                return Outcome(job.index, "skipped")  # another run finished it meanwhile
            if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "report.json").is_file():
                raise BavisError(f"{out_dir} exists and is not a napari-bavis result; move it or choose another --out")
            scan = load_scan(job.path)  # a bad file fails here, for its own reason, before anything else
            card = model[1] if isinstance(model, tuple) else None
            if card is not None and card.sex_encoding is not None and job.sex is None:
                raise BavisError(f"the model {card.name} needs the sex (F/M): give --sex or a sex column in --covariates")
            analysis = pipeline.analyze(scan, model=model, chronological_age=job.age, sex=job.sex,
                                        methods=job.methods, device=device, progress=progress, **job.explain)
            pipeline.export_analysis(analysis, out_dir, threshold=job.threshold, mode=job.mode)
        return Outcome(job.index, "done", seconds=time.perf_counter() - start)
    except Exception as err:  # one line per scan, whatever went wrong
        extra = {"disk_full": True} if is_disk_full(err) else {}
        return Outcome(job.index, "failed", failure_line(job.path, err), time.perf_counter() - start, extra)


_WORKER: dict = {}


def _worker_init(model_ref, threads: int, events) -> None:
    """Share the cores: torch, OpenMP and ITK (registration) each get ``threads`` per worker."""
    threads = max(1, threads)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(threads)
    import SimpleITK
    import torch

    from . import pipeline

    torch.set_num_threads(threads)
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    signal.signal(signal.SIGINT, _worker_sigint)
    _WORKER["events"] = events
    try:
        _WORKER["model"] = pipeline.load_model(model_ref, "cpu")
    except Exception as err:  # reported per job, so the run still ends cleanly
        _WORKER["model_error"] = err


def _worker_sigint(signum, frame) -> None:
    """The first Ctrl-C stops the scan at hand (its temporary folder is removed on the way out) and
    every queued one; later ones are ignored so that clean-up is not interrupted."""
    if not _WORKER.get("stop"):
        _WORKER["stop"] = True
        raise KeyboardInterrupt


def _worker_run(job: Job) -> Outcome:
    if _WORKER.get("stop"):
        return Outcome(job.index, "cancelled")
    if "model_error" in _WORKER:
        return Outcome(job.index, "failed", failure_line(job.path, _WORKER["model_error"]))
    events = _WORKER.get("events")

    def progress(step, done, total):
        if events is not None:
            events.put((job.index, step, done, total))

    try:
        return run_job(job, _WORKER["model"], "cpu", progress)
    except KeyboardInterrupt:
        _WORKER["stop"] = True
        return Outcome(job.index, "cancelled")


# --- resume and results.csv -------------------------------------------------------------------

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
        shown = next((m for m in ("smoe*gradcam++", "gradcam++", "gradcam", "smoe") if m in regions), None)
        table = (regions.get(shown) or {}).get("regions") if shown else None
        if table:
            row["top_region_ras_mm"] = " ".join(f"{v:.1f}" for v in table[0]["peak_ras_mm"])
            row["top_region_volume_mm3"] = f"{table[0]['volume_mm3']:.0f}"
    return row


def write_results(csv_path: Path, rows: list[dict]) -> None:
    """Merge with rows already there (kept unless this run redid that scan), then replace atomically."""
    from .figure import write_bytes_atomic

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


# --- analyze ---------------------------------------------------------------------------------

def _methods(text: str) -> tuple[str, ...]:
    from .pipeline import ALL_METHODS

    methods = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    if text.strip().lower() == "all":
        return ALL_METHODS
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)} (or all)")
    return methods


def _resolve_device(name: str) -> str:
    from .models import pick_device

    try:
        return str(pick_device(name))
    except BavisError as err:
        raise UsageError(str(err)) from None


def _load_model_or_usage(model_ref, device: str):
    from . import pipeline

    try:
        return pipeline.load_model(model_ref, device)
    except BavisError as err:
        raise UsageError(f"--model {model_ref}: {_one_line(err)}") from None


def _check_out_dir(out: Path, scans: Sequence[Path], names: Sequence[str]) -> None:
    """Refuse ``--out`` only where writing would touch an input file."""
    resolved = {p.resolve() for p in scans}
    targets = [out / "results.csv"] + [out / n for n in names]
    for target in targets:
        t = target.resolve()
        for scan in resolved:
            if scan == t or scan.is_relative_to(t):
                raise UsageError(f"--out {out}: writing {target} would replace the input {scan}; choose another folder")


def _model_ref(text: str):
    from .pipeline import BUNDLED

    return text if text in BUNDLED else Path(text)


def add_explain_arguments(parser) -> None:
    """Issue 12's switches: the atlas, region importance, faithfulness, the randomisation check."""
    from .atlases import ATLASES, DEFAULT_ATLAS

    parser.add_argument("--atlas", choices=(*ATLASES, "none"), default=DEFAULT_ATLAS,
                        help=f"atlas that names the regions (default {DEFAULT_ATLAS}; none: no atlas)")
    parser.add_argument("--region-importance", action=argparse.BooleanOptionalAction, default=None,
                        help="brain age with each atlas region occluded (default: on when it takes under 10 s)")
    parser.add_argument("--faithfulness", action=argparse.BooleanOptionalAction, default=None,
                        help="deletion/insertion curves of every map (default: on when they take under 10 s)")
    parser.add_argument("--sanity-check", action="store_true",
                        help="model-randomisation test of the maps (Adebayo et al. 2018) into report.json")


def explain_options(args) -> dict:
    return {"atlas": None if args.atlas == "none" else args.atlas, "region_importance": args.region_importance,
            "faithfulness": args.faithfulness, "sanity_check": args.sanity_check}


def cmd_analyze(args) -> int:
    from .regions import DEFAULT_MODE, DEFAULT_THRESHOLD

    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
    if args.top_percent is not None and args.threshold is not None:
        raise UsageError("give --threshold or --top-percent, not both")
    mode, threshold = (("top_percent", args.top_percent) if args.top_percent is not None
                       else ("value", args.threshold) if args.threshold is not None else (DEFAULT_MODE, DEFAULT_THRESHOLD))
    if mode == "value" and not 0 <= threshold <= 1:
        raise UsageError(f"--threshold {threshold:g}: must be between 0 and 1")
    if mode == "top_percent" and not 0 < threshold <= 100:
        raise UsageError(f"--top-percent {threshold:g}: must be in (0, 100]")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    table = read_covariates(args.covariates) if args.covariates else {}

    scans = find_scans(args.paths, exclude=out)
    if not scans:
        raise UsageError(f"no {'/'.join(NIFTI_SUFFIXES)} files found in " + ", ".join(map(str, args.paths)))
    if args.age is not None and len(scans) > 1:
        raise UsageError(f"--age applies to one scan but {len(scans)} were found; use --covariates for a cohort")
    names = output_names(scans)
    _check_out_dir(out, scans, names)
    started = time.time()
    try:
        check_writable_dir(out)  # before any scan is analysed (and before the model loads)
    except OutputError as err:
        raise UsageError(str(err)) from None
    selected = shard_indices(len(scans), args.shard)
    device = _resolve_device(args.device)
    model = _load_model_or_usage(_model_ref(args.model), device)  # checks the model once, up front
    if model[1].task != "brain_age":
        raise UsageError(f"--model {args.model}: {model[1].name} is a {model[1].task} model; use `napari-bavis compare`")

    jobs: list[Job] = []
    rows: list[dict] = []
    sexes: dict[int, str | None] = {}
    skipped = 0
    for i in selected:
        scan, name = scans[i], names[i]
        cov = covariates_for(scan, table) or Covariates()
        age = cov.age if cov.age is not None else args.age
        sex = cov.sex or args.sex
        sexes[i] = sex
        report = None if args.force else finished_report(out / name)
        if report is not None:
            with claim(out, name) as mine:
                if mine:  # a killed run's hidden leftovers beside a finished result
                    clean_stale_parts(out, name, before=started)
            skipped += 1
            rows.append(result_row(name, scan, "skipped", report, sex))
            continue
        jobs.append(Job(i, str(scan), str(out / name), age, sex, args.methods, threshold, mode, args.force, started,
                        explain_options(args)))

    workers = args.workers
    if device != "cpu" and workers > 1:
        _err(f"napari-bavis: {device} holds one model instance: scans run one after another (--workers ignored)")
        workers = 1
    workers = min(workers, max(1, len(jobs)))
    bars = _progress_bars_enabled(args.quiet)
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        if workers == 1:
            _run_serial(jobs, model, device, bars, outcomes)
        else:
            _run_pool(jobs, _model_ref(args.model), workers, bars, outcomes)
    except KeyboardInterrupt:
        interrupted = True

    done = failed = busy = 0
    disk_full = any(o.extra.get("disk_full") for o in outcomes)
    for outcome in sorted(outcomes, key=lambda o: o.index):
        scan, name = scans[outcome.index], names[outcome.index]
        if outcome.status == "busy":  # its row is the other run's to write
            busy += 1
        elif outcome.status == "cancelled":
            continue
        elif outcome.status == "skipped":
            skipped += 1
            rows.append(result_row(name, scan, "skipped", finished_report(out / name), sexes[outcome.index]))
        elif outcome.status == "done":
            done += 1
            report = finished_report(out / name)
            rows.append(result_row(name, scan, "done", report, sexes[outcome.index], seconds=outcome.seconds))
            if report is not None:
                print(f"{scan}: {report_line(report)}", flush=True)
        else:
            failed += 1
            rows.append(result_row(name, scan, "failed", None, sexes[outcome.index], outcome.error, outcome.seconds))
    results = out / ("results.csv" if args.shard is None else f"results.shard-{args.shard[0]}-of-{args.shard[1]}.csv")
    write_results_locked(results, rows)
    elapsed = time.perf_counter() - t0
    shard_note = f" (shard {args.shard[0]}/{args.shard[1]}: {len(selected)} of {len(scans)} scans)" if args.shard else ""
    busy_note = f", {busy} left to another run" if busy else ""
    _err(f"napari-bavis: {done} done, {failed} failed, {skipped} skipped{busy_note} in {elapsed:.1f} s{shard_note}; results: {results}")
    if interrupted:
        unfinished = len(jobs) - sum(o.status not in ("cancelled",) for o in outcomes)
        _err(f"napari-bavis: interrupted; {unfinished} scan(s) not started or unfinished (run again to resume)")
        return EXIT_INTERRUPTED
    if disk_full:
        _err(f"napari-bavis: stopped: no space left on device under {out}; free some space and run again to resume")
    return EXIT_FAILED if failed else EXIT_OK


def _run_serial(jobs, model, device, bars: bool, outcomes: list) -> None:
    overall = _tqdm(total=len(jobs), desc="scans", unit="scan", position=0, disable=not bars)
    try:
        for job in jobs:
            step_bar = _tqdm(total=1, desc=Path(job.path).name[:30], position=1, disable=not bars,
                             bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")

            def progress(step, done, total, bar=step_bar):
                bar.total = total
                bar.n = done
                bar.set_postfix_str(step, refresh=True)

            outcome = run_job(job, model, device, progress)
            step_bar.close()
            if outcome.status == "failed":
                overall.clear()
                _err(outcome.error)
            outcomes.append(outcome)
            overall.update(1)
            if outcome.extra.get("disk_full"):
                break  # every further scan would fail the same way after minutes of work
    finally:
        overall.close()


def _run_pool(jobs, model_ref, workers: int, bars: bool, outcomes: list) -> None:
    """A process pool on CPU: each worker loads the model once and shares the cores evenly."""
    import multiprocessing as mp
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # forking a process that already runs torch threads can deadlock
    events = ctx.Queue() if bars else None
    threads = max(1, (os.cpu_count() or 1) // workers)
    overall = _tqdm(total=len(jobs), desc="scans", unit="scan", position=0, disable=not bars)
    scan_bars: dict[int, object] = {}
    by_index = {j.index: j for j in jobs}
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(model_ref, threads, events))
    stop_early = False
    pending: set = set()
    try:
        pending = {pool.submit(_worker_run, job) for job in jobs}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            pending = {f for f in pending if not f.cancelled()}
            while events is not None:
                try:
                    index, step, done, total = events.get_nowait()
                except queue.Empty:
                    break
                bar = scan_bars.get(index)
                if bar is None:
                    bar = scan_bars[index] = _tqdm(total=total, position=1 + len(scan_bars) % workers,
                                                   desc=Path(by_index[index].path).name[:30],
                                                   bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")
                bar.total, bar.n = total, done
                bar.set_postfix_str(step, refresh=True)
            for future in finished:
                try:
                    outcome = future.result()
                except Exception as err:  # a worker died (e.g. out of memory)
                    outcome = None
                    _err(f"napari-bavis: a worker process failed: {type(err).__name__}: {_one_line(err)}")
                if outcome is None:
                    continue
                bar = scan_bars.pop(outcome.index, None)
                if bar is not None:
                    bar.close()
                if outcome.status == "failed":
                    overall.clear()
                    _err(outcome.error)
                outcomes.append(outcome)
                overall.update(1)
                if outcome.extra.get("disk_full"):
                    stop_early = True
                    for other in pending:
                        other.cancel()
        # jobs lost with a dead worker still count as failed, with their one line
        seen = {o.index for o in outcomes}
        for job in jobs:
            if job.index not in seen and not stop_early:
                outcome = Outcome(job.index, "failed", f"{job.path}: internal error: its worker process died")
                _err(outcome.error)
                outcomes.append(outcome)
    except KeyboardInterrupt:
        # do not wait for queued scans (finished ones are complete); the scans at hand stop too
        for future in pending:
            future.cancel()
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for bar in scan_bars.values():
            bar.close()
        overall.close()


def _stop_workers(pool, grace_s: float = 4.0) -> None:
    """Interrupt the workers (a SIGINT sent to this process alone does not reach them), give them
    ``grace_s`` to remove their temporary folders, then terminate what is left (a killed worker's
    hidden .part folder is cleaned by the next run)."""
    processes = [p for p in (getattr(pool, "_processes", None) or {}).values() if p.is_alive()]
    pool.shutdown(wait=False, cancel_futures=True)  # idle workers exit instead of waiting for work
    for proc in processes:
        try:
            os.kill(proc.pid, signal.SIGINT)
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)


# --- compare, demo, models, train --------------------------------------------------------------

def _fresh_or_own_dir(out: Path) -> None:
    """Whole-folder outputs (demo, compare) replace ``out``: only when it is new, empty or ours."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.json").is_file())):
        raise UsageError(f"--out {out}: exists and is not a napari-bavis result; choose a new folder")
    try:
        check_writable_dir(out)  # before the model loads and the scans are analysed
    except OutputError as err:
        raise UsageError(str(err)) from None


def cmd_compare(args) -> int:
    from . import pipeline

    out = Path(args.out)
    _fresh_or_own_dir(out)
    for p in (args.scan_a, args.scan_b):
        if Path(p).resolve().is_relative_to(out.resolve()):
            raise UsageError(f"--out {out}: holds the input {p}; choose another folder")
    device = _resolve_device(args.device)
    model = _load_model_or_usage(_model_ref(args.model), device)
    if model[1].task != "siamese":
        raise UsageError(f"--model {args.model}: {model[1].name} is a {model[1].task} model; comparing needs a Siamese model")
    bar = _tqdm(total=1, desc="compare", disable=not _progress_bars_enabled(args.quiet), bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")

    def progress(step, done, total):
        bar.total, bar.n = total, done
        bar.set_postfix_str(step, refresh=True)

    t0 = time.perf_counter()
    try:
        comparison = pipeline.compare(args.scan_a, args.scan_b, model=model, methods=args.methods,
                                      device=device, progress=progress)
        report = pipeline.export_comparison(comparison, out, threshold=args.threshold)
    except Exception as err:
        bar.close()
        _err(failure_line(f"{args.scan_a} vs {args.scan_b}", err))
        return EXIT_FAILED
    bar.close()
    sim = report.get("similarity") or {}
    print(f"{args.scan_a} vs {args.scan_b}: cosine similarity {sim.get('cosine', float('nan')):.3f}, "
          f"embedding distance {sim.get('distance', float('nan')):.3f}")
    _err(f"napari-bavis: compared in {time.perf_counter() - t0:.1f} s; results in {out}")
    return EXIT_OK


def demo_sample():
    """(image, chronological age, sex, label) of the demo scan: the phantoms' old AD-like subject when
    that package offers it, else the foundation's synthetic native-space scan."""
    try:
        from .phantoms import SAMPLE_KINDS, sample_subject

        spec = SAMPLE_KINDS["old AD-like"]
        return sample_subject("old AD-like"), spec["age"], spec["sex"], "old AD-like phantom"
    except (ImportError, KeyError):
        from .samples import synthetic_native_scan

        return synthetic_native_scan(), None, None, "synthetic native-space scan"


def cmd_demo(args) -> int:
    from . import pipeline
    from .io import scan_from_image, write_nifti

    out = Path(args.out)
    _fresh_or_own_dir(out)
    if "demo" not in pipeline.bundled_models() and args.model == "demo":
        raise UsageError("the bundled demo model is not installed with this copy of napari-bavis "
                         "(src/napari_bavis/data/demo.pt); give a checkpoint with --model FILE")
    device = _resolve_device(args.device)
    model = _load_model_or_usage(_model_ref(args.model), device)
    t0 = time.perf_counter()
    bar = _tqdm(total=1, desc="demo", disable=not _progress_bars_enabled(args.quiet), bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")

    def progress(step, done, total):
        bar.total, bar.n = total, done
        bar.set_postfix_str(step, refresh=True)

    try:
        image, age, sex, label = demo_sample()
        if model[1].sex_encoding is None:
            sex = None
        elif sex is None:
            sex = "F"  # the template has no recorded sex; the model needs one
        scan = scan_from_image(image, path=f"{label}.nii.gz")  # names the figure and report after the sample
        analysis = pipeline.analyze(scan, model=model, chronological_age=age, sex=sex,
                                    methods=pipeline.ALL_METHODS, device=device, progress=progress)
        report = pipeline.export_analysis(analysis, out)  # the default cut (regions.DEFAULT_THRESHOLD)
        write_nifti(out / "scan.nii.gz", image)
    except Exception as err:
        bar.close()
        _err(failure_line(f"demo ({label if 'label' in locals() else 'sample'})", err))
        return EXIT_FAILED
    bar.close()
    print(f"demo on the {label}: {report_line(report)}")
    print(f"maps, figure.png and report.json in {out.resolve()} (the scan itself: scan.nii.gz)")
    _err(f"napari-bavis: demo done in {time.perf_counter() - t0:.1f} s (research use only, not a medical device)")
    return EXIT_OK


def _grid_text(card) -> str:
    try:
        g = card.model_grid
        return f"{'x'.join(map(str, g.shape))} @ {'x'.join(f'{v:g}' for v in g.voxel_size)} mm"
    except Exception:
        return "?"


def cmd_models_import(args) -> int:
    """``models import WEIGHTS --preset NAME --out FILE``: a published model's released weights -> our checkpoint."""
    from .models.presets import import_weights, presets_line

    if not args.weights or not args.preset or not args.out:
        raise UsageError(f"models import needs WEIGHTS --preset NAME --out FILE (presets: {presets_line()})")
    try:
        card = import_weights(Path(args.weights), args.preset, Path(args.out))
    except BavisError as err:
        _err(failure_line(args.weights, err))
        return EXIT_FAILED
    print(f"wrote {args.out}: {card.name} {card.version} ({card.architecture}), source sha256 {card.source['sha256']}")
    return EXIT_OK


def cmd_models(args) -> int:
    from . import pipeline

    if args.checkpoint == "import":
        return cmd_models_import(args)
    if args.weights or args.preset or args.out:
        raise UsageError("--preset and --out belong to 'napari-bavis models import WEIGHTS --preset NAME --out FILE'")
    if args.checkpoint:
        from .models import load_checkpoint

        ref = args.checkpoint
        try:
            if ref in pipeline.BUNDLED:
                _, card = pipeline.load_model(ref, "cpu")
            else:
                _, card = load_checkpoint(Path(ref), device="cpu")
        except BavisError as err:
            _err(failure_line(ref, err))
            return EXIT_FAILED
        for key in ("name", "version", "training_data", "provenance", "licence", "intended_use"):
            if isinstance(getattr(card, key, None), str):  # a newline inside a name would forge a line
                setattr(card, key, _one_line(getattr(card, key)))
        print("\n".join(_one_line(line) for line in card.summary().splitlines()))
        return EXIT_OK
    bundled = pipeline.bundled_models()
    if not bundled:
        print("no bundled models are installed with this copy of napari-bavis")
        return EXIT_OK
    header = ("name", "architecture", "task", "grid", "training ages", "intended use")
    lines = [header]
    for name, path in bundled.items():
        try:
            _, card = pipeline.load_model(name, "cpu")
        except BavisError as err:
            lines.append((name, "?", "?", "?", "?", f"unreadable: {_one_line(err)}"))
            continue
        ages = "-".join(f"{a:g}" for a in card.training_age_range) + " y" if card.training_age_range else "unknown"
        lines.append((name, card.architecture, card.task, _grid_text(card), ages, card.intended_use))
    widths = [max(len(_one_line(row[i])) for row in lines) for i in range(len(header))]
    for row in lines:
        print("  ".join(_one_line(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return EXIT_OK


def cmd_train(args) -> int:
    from . import training

    train = training.train_brain_age if args.task == "brain-age" else training.train_siamese
    command = "napari-bavis train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    try:
        if args.task == "real-brain-age":
            if not args.bids:
                raise UsageError("train real-brain-age needs --bids DIR (a BIDS dataset with participants.tsv)")
            from .training.real_brain_age import format_table
            from .training.real_data import dataset_info

            card, table = training.train_real_brain_age(
                Path(args.out_path), args.bids, name=args.name, seed=args.seed, workers=args.workers,
                dataset=dataset_info(args.bids), progress=not args.quiet, command=command)
            print(format_table(table))
        else:
            card = train(Path(args.out_path), n_subjects=args.subjects, epochs=args.epochs, grid=args.grid_mm,
                         seed=args.seed, device=args.device, resume=not args.restart, progress=not args.quiet,
                         command=command, through_pipeline=args.through_pipeline, workers=args.workers)
    except BavisError as err:
        _err(failure_line(args.out_path, err))
        return EXIT_FAILED
    print(f"{args.task}: wrote {args.out_path} ({card.name} {card.version}, {card.architecture})")
    return EXIT_OK


# --- argument parsing --------------------------------------------------------------------------

def _sex_arg(text: str) -> str:
    try:
        value = _parse_sex(text, "--sex")
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value is None:
        raise argparse.ArgumentTypeError("--sex needs F or M")
    return value


def _age_arg(text: str) -> float:
    try:
        value = _parse_age(text, "--age")
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if value is None:
        raise argparse.ArgumentTypeError("--age needs a number of years")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .pipeline import DEFAULT_METHODS, DEFAULT_MODEL
    from .regions import DEFAULT_THRESHOLD

    parser = argparse.ArgumentParser(
        prog="napari-bavis",
        description="Explainable brain age from MRI without a display (research use only, not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"napari-bavis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    devices = ("auto", "cpu", "cuda", "mps")

    a = sub.add_parser("analyze", help="brain age and explanation maps of scans or folders of scans")
    a.add_argument("paths", nargs="+", metavar="PATH", help=f"{'/'.join(NIFTI_SUFFIXES)} files or folders (searched recursively)")
    a.add_argument("--out", required=True, metavar="DIR", help="output folder: DIR/<scan name>/ and DIR/results.csv")
    a.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|FILE",
                   help=f"bundled model name or checkpoint file (default {DEFAULT_MODEL}, trained on real adult brains)")
    a.add_argument("--age", type=_age_arg, metavar="YEARS", help="chronological age (a single scan)")
    a.add_argument("--sex", type=_sex_arg, metavar="F|M", help="sex (scans without a covariates row)")
    a.add_argument("--covariates", metavar="CSV", help="table with a file (or scan) column and age and sex columns")
    a.add_argument("--methods", type=_methods, default=tuple(DEFAULT_METHODS), metavar="LIST",
                   help=f"comma-separated map methods or 'all' (default {','.join(DEFAULT_METHODS)})")
    a.add_argument("--threshold", type=float, default=None, help="regions table: map values above V (the thesis used 0.3)")
    a.add_argument("--top-percent", type=float, default=None, metavar="K",
                   help=f"regions table: the top K %% of each map (default {DEFAULT_THRESHOLD:g})")
    add_explain_arguments(a)
    a.add_argument("--device", choices=devices, default="auto")
    a.add_argument("--workers", type=int, default=1, metavar="N", help="parallel CPU processes (one model each)")
    a.add_argument("--force", action="store_true", help="redo scans whose results are already complete")
    a.add_argument("--shard", type=parse_shard, metavar="i/n", help="process only part i of n of the sorted scan list")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser("compare", help="similarity of two scans under a Siamese encoder, with one map per scan")
    c.add_argument("scan_a", metavar="A")
    c.add_argument("scan_b", metavar="B")
    c.add_argument("--out", required=True, metavar="DIR")
    c.add_argument("--model", default="demo-siamese", metavar="demo-siamese|FILE")
    c.add_argument("--methods", type=_methods, default=tuple(DEFAULT_METHODS), metavar="LIST")
    c.add_argument("--threshold", type=float, default=0.3)
    c.add_argument("--device", choices=devices, default="auto")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser("demo", help="the main job on a sample scan with the bundled model, no display needed")
    d.add_argument("--out", default="bavis-demo", metavar="DIR", help="output folder (default ./bavis-demo)")
    d.add_argument("--model", default="demo", metavar="demo|FILE", help=argparse.SUPPRESS)
    d.add_argument("--device", choices=devices, default="auto")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("models", help="list bundled models, show a checkpoint's model card, or import a published model "
                                      "(models import WEIGHTS --preset NAME --out FILE)")
    m.add_argument("checkpoint", nargs="?", metavar="FILE|import", help="a checkpoint (or bundled name) to describe, or 'import'")
    m.add_argument("weights", nargs="?", metavar="WEIGHTS", help="import: the released weight file (a plain state_dict)")
    m.add_argument("--preset", metavar="NAME", help="import: which published model the weights are (e.g. sfcn-ukb)")
    m.add_argument("--out", metavar="FILE", help="import: the napari-bavis checkpoint to write")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a demo model on phantoms (resumes), or the real-brain model on a BIDS dataset")
    t.add_argument("task", choices=("brain-age", "siamese", "real-brain-age"),
                   help="phantom demo models, or the ridge ensemble on the real T1 scans of --bids")
    t.add_argument("--bids", metavar="DIR", help="real-brain-age: the BIDS dataset to train on")
    t.add_argument("--name", default="ds002748", help="real-brain-age: the model's name (default ds002748)")
    t.add_argument("--workers", type=int, default=2, help="scans or phantoms preprocessed in parallel")
    t.add_argument("out_path", metavar="OUT", help="checkpoint file to write")
    t.add_argument("--subjects", type=int, default=200, help="phantom subjects, split by subject into train/validation/test")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--grid-mm", type=float, default=3.0, help="voxel size of the model grid over the MNI box (default 3 mm)")
    t.add_argument("--seed", type=int, default=2026)
    t.add_argument("--device", choices=devices, default="auto")
    t.add_argument("--restart", action="store_true", help="ignore a saved resume state and start over")
    t.add_argument("--through-pipeline", action="store_true",
                   help="phantoms: native-space phantoms put through the pipeline's preprocessing (how the bundled "
                        "demo models are trained; about 8 s of CPU per phantom) instead of grid phantoms")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    from .cli_bids import add_bids_parser  # issue 16: the BIDS-App interface

    add_bids_parser(sub, devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    try:
        return args.func(args)
    except UsageError as err:
        parser.exit(EXIT_USAGE, f"napari-bavis: error: {err}\n")
    except KeyboardInterrupt:
        _err("napari-bavis: interrupted")
        return EXIT_INTERRUPTED
    except OSError as err:  # e.g. the results table on a full disk: one line, not a traceback
        _err(f"napari-bavis: {os_error_text(err)}")
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
