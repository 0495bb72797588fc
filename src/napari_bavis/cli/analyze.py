"""``napari-bavis analyze``: one scan or a whole folder, serially or in worker processes, resumable,
sharded, with ``results.csv`` (the engine is ``napari_bavis.cohort``; this is its command line)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ..io import NIFTI_SUFFIXES
from ..outputs import OutputError, check_writable_dir, claim, clean_stale_parts
from ..summary import report_line
from ..cohort.covariates import Covariates, covariates_for, read_covariates
from ..cohort.jobs import Job, Outcome, _worker_init, _worker_run, run_job
from ..cohort.prefetch import ScanPrefetch
from ..cohort.results import finished_report, result_row, write_results_locked
from ..cohort.scans import find_scans, output_names, shard_indices
from ._common import (
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, _check_out_dir, _err, _load_model_or_usage, _model_ref, _progress_bars_enabled, _resolve_device, _one_line, _tqdm, explain_options,
)


def cmd_analyze(args) -> int:
    from ..regions import DEFAULT_MODE, DEFAULT_THRESHOLD

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
    # The first scan is read while torch imports (cohort/prefetch.py); a pool's workers read their own.
    # Each earlier result's report read once (a job re-checks under its claim, for runs finishing meanwhile)
    reports = {i: None if args.force else finished_report(out / names[i]) for i in selected}
    first = next((i for i in selected if reports[i] is None), None)
    prefetch = ScanPrefetch(scans[first]) if first is not None and args.workers == 1 else None
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
        report = reports[i]
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
            _run_serial(jobs, model, device, bars, outcomes, prefetch.load if prefetch else None)
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


def _record(outcome: Outcome, outcomes: list, overall) -> bool:
    """Print a failed scan's one line, keep the outcome, advance the bar; True when the disk is full
    (every further scan would fail the same way after minutes of work)."""
    if outcome.status == "failed":
        overall.clear()
        _err(outcome.error)
    outcomes.append(outcome)
    overall.update(1)
    return bool(outcome.extra.get("disk_full"))


def _run_serial(jobs, model, device, bars: bool, outcomes: list, load_scan=None) -> None:
    overall = _tqdm(total=len(jobs), desc="scans", unit="scan", position=0, disable=not bars)
    try:
        for job in jobs:
            step_bar = _tqdm(total=1, desc=Path(job.path).name[:30], position=1, disable=not bars,
                             bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")

            def progress(step, done, total, bar=step_bar):
                bar.total = total
                bar.n = done
                bar.set_postfix_str(step, refresh=True)

            outcome = run_job(job, model, device, progress, load_scan)
            step_bar.close()
            if _record(outcome, outcomes, overall):
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
                if _record(outcome, outcomes, overall):
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
