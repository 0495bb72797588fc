"""One scan's work in a cohort run (analyse, export, claim its folder so concurrent runs share the
work), in this process or in a worker process; every error becomes that scan's one line."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BavisError
from ..outputs import claim, clean_stale_parts, is_disk_full
from ..summary import failure_line
from .results import finished_report



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


def run_job(job: Job, model, device: str, progress=None, load_scan=None) -> Outcome:
    """Analyse and export one scan; every error becomes the outcome's one line. ``load_scan``: how
    the scan is read (default ``io.load_scan``; the CLI passes a prefetch, cohort/prefetch.py)."""
    from .. import pipeline

    if load_scan is None:
        from ..io import load_scan

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

    from .. import pipeline

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
        # Raised only inside a scan's work, and not inside the import machinery: there Python would
        # print it as an "Exception ignored" traceback (a weakref callback of an import lock). An idle
        # or importing worker just stops taking jobs; the parent ends any worker after its grace time.
        if _WORKER.get("busy") and not (frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")):
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

    _WORKER["busy"] = True
    try:
        return run_job(job, _WORKER["model"], "cpu", progress)
    except KeyboardInterrupt:
        _WORKER["stop"] = True
        return Outcome(job.index, "cancelled")
    finally:
        _WORKER["busy"] = False
