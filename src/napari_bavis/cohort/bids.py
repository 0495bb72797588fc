"""BIDS-App participant level: T1w scans of a BIDS dataset in, BIDS derivatives out.

Why: cohorts live in BIDS, and labs run tools as ``tool bids_dir output_dir participant`` over a job
array or a scheduler (BIDS-Apps, fMRIPrep). Each scan becomes, in ``OUTPUT_DIR/sub-XX/[ses-YY/]anat/``:

- ``<prefix>_desc-<method>_map.nii.gz``: each map in the T1w's own voxel grid and affine,
- ``<prefix>_space-MNI152NLin2009aSym_desc-<method>_map.nii.gz``: each map on the model grid in
  the template space (nilearn's ICBM152 2009a symmetric), what the group level averages,
- ``<prefix>_figure.png``, ``<prefix>_report.pdf`` (report_pdf.py) and, written last,
  ``<prefix>_brainage.json`` (the report): its presence with every map it names marks a finished scan,

where ``<prefix>`` is the T1w file name without ``_T1w.nii[.gz]`` (``sub-01_ses-02``, keeping run/acq).
Results are made in a work folder, then moved into place; a killed run is redone, a finished scan is
skipped, two runs into one output share the scans through :func:`outputs.claim`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BavisError
from ..methods import DEFAULT_METHODS

SPACE = "MNI152NLin2009aSym"
BIDS_VERSION = "1.9.0"
_T1W = re.compile(r"^(sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_T1w\.nii(\.gz)?$")


class BidsError(BavisError):
    """A BIDS dataset or derivatives folder that cannot be used (one line)."""


@dataclass
class BidsScan:
    path: Path
    subject: str  # label without "sub-"
    session: str | None  # label without "ses-"
    prefix: str  # sub-01[_ses-02][_run-1]
    age: float | None = None
    sex: str | None = None
    row: dict = field(default_factory=dict)  # the participants.tsv row (lower-case columns)

    def anat_dir(self, out_dir) -> Path:
        base = Path(out_dir) / f"sub-{self.subject}"
        return (base / f"ses-{self.session}" if self.session else base) / "anat"

    def source(self, bids_dir) -> str:
        return "bids:raw:" + self.path.relative_to(bids_dir).as_posix()


def _labels(values, kind: str) -> set[str] | None:
    if not values:
        return None
    return {v[len(kind) + 1:] if v.startswith(f"{kind}-") else v for v in values}


def _age(text) -> float | None:
    try:
        age = float(text)
    except (TypeError, ValueError):
        return None
    return age if math.isfinite(age) and 0 <= age < 150 else None


def _session_ages(subject_dir: Path) -> dict[str, float]:
    """Ages per session from ``sub-XX_sessions.tsv`` (longitudinal datasets record them there)."""
    from ..training.real_data import participant_rows

    table = subject_dir / f"{subject_dir.name}_sessions.tsv"
    if not table.is_file():
        return {}
    out = {}
    for row in participant_rows(table):
        age = _age(row.get("age"))
        if age is not None and row.get("session_id"):
            out[row["session_id"].removeprefix("ses-")] = age
    return out


def find_bids_scans(bids_dir, participant_labels=None, session_labels=None) -> list[BidsScan]:
    """Every ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` (sorted), with age and sex from ``participants.tsv``
    (``age``; ``sex`` or ``gender``, any case; a session's age from ``sub-XX_sessions.tsv`` first)."""
    from ..training.real_data import participant_rows, sex_of

    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise BidsError(f"{bids_dir}: not a folder")
    rows = {}
    if (bids_dir / "participants.tsv").is_file():
        rows = {r.get("participant_id", "").removeprefix("sub-"): r for r in participant_rows(bids_dir / "participants.tsv")}
    subjects = sorted(p for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subjects:
        raise BidsError(f"{bids_dir}: no sub-* folders; is it a BIDS dataset?")
    wanted, sessions = _labels(participant_labels, "sub"), _labels(session_labels, "ses")
    unknown = sorted(wanted - {p.name[4:] for p in subjects}) if wanted else []
    if unknown:
        raise BidsError(f"{bids_dir}: no participant {', '.join('sub-' + u for u in unknown)}")
    found = []
    for subject_dir in subjects:
        label = subject_dir.name[4:]
        if wanted and label not in wanted:
            continue
        row, by_session = rows.get(label, {}), _session_ages(subject_dir)
        for anat in sorted([subject_dir / "anat", *subject_dir.glob("ses-*/anat")]):
            session = anat.parent.name[4:] if anat.parent.name.startswith("ses-") else None
            if sessions and session not in sessions:
                continue
            for f in sorted(anat.glob("*_T1w.nii*")):
                m = _T1W.match(f.name)
                if m and not f.name.startswith("."):
                    age = by_session.get(session) if session in by_session else _age(row.get("age"))
                    found.append(BidsScan(f, label, session, m.group(1), age, sex_of(row), row))
    return found


def code_url() -> str | None:
    """The package's source URL from its installed metadata (``[project.urls]`` or ``Home-page``),
    None when it declares none: BIDS's ``CodeURL`` is then left out rather than invented."""
    from importlib import metadata

    try:
        meta = metadata.metadata("napari-bavis")
    except metadata.PackageNotFoundError:
        return None
    urls = {}
    for entry in meta.get_all("Project-URL") or ():
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    for label in ("source", "source code", "repository", "code", "homepage"):
        if urls.get(label):
            return urls[label]
    home = meta.get("Home-page")
    return home.strip() if home and home.strip() and home.strip() != "UNKNOWN" else None


def dataset_description(bids_dir) -> dict:
    """``dataset_description.json`` of the derivatives: what made them and from which dataset."""
    from .. import __version__

    bids_dir = Path(bids_dir)
    try:
        source = json.loads((bids_dir / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        source = {}
    src = {"URL": bids_dir.resolve().as_uri()}
    for key, out in (("DatasetDOI", "DOI"), ("Version", "Version")):
        if isinstance(source.get(key), str) and source[key]:
            src[out] = source[key]
    generated_by = {"Name": "napari-bavis", "Version": __version__,
                    "Description": "explainable brain age from T1w MRI (research use only, not a medical device)"}
    if code_url():
        generated_by["CodeURL"] = code_url()
    return {
        "Name": f"napari-bavis brain age of {source.get('Name') or bids_dir.name}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": [src],
        "DatasetLinks": {"raw": bids_dir.resolve().as_uri()},
    }


def write_dataset_description(out_dir, bids_dir) -> Path:
    from ..outputs import write_bytes_atomic
    from ..outputs import locked

    path = Path(out_dir) / "dataset_description.json"
    with locked(path):
        write_bytes_atomic(path, json.dumps(dataset_description(bids_dir), indent=2).encode())
    return path


# --- one scan -----------------------------------------------------------------------------------

@dataclass
class ParticipantOptions:
    """Everything a participant job needs besides the scan (picklable: it travels to workers)."""
    bids_dir: str
    out_dir: str
    model: str = "ds002748"
    device: str = "cpu"
    methods: tuple = DEFAULT_METHODS
    threshold: float | None = None
    mode: str | None = None
    explain: dict = field(default_factory=dict)
    force: bool = False
    work_dir: str | None = None
    omp_nthreads: int | None = None
    started: float = field(default_factory=time.time)


@dataclass
class ScanOutcome:
    prefix: str
    path: str
    status: str  # "done" | "skipped" | "failed" | "busy" (another run holds it)
    error: str | None = None
    seconds: float = 0.0
    report: dict | None = None


def method_label(method: str) -> str:
    """A BIDS ``desc`` label (letters and digits only): gradcam++ -> gradcampp, smoe*gradcam++ -> smoexgradcampp."""
    from ..methods import file_stem

    return re.sub(r"[^A-Za-z0-9]", "", file_stem(method))


def finished_report(scan: BidsScan, out_dir) -> dict | None:
    """The ``_brainage.json`` of a finished scan (every file it names present), else None."""
    anat = scan.anat_dir(out_dir)
    try:
        report = json.loads((anat / f"{scan.prefix}_brainage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = [*(report.get("maps") or {}).values(), *(report.get("maps_mni") or {}).values()]
    if not isinstance(report, dict) or "brain_age" not in report or not all((anat / f).is_file() for f in files):
        return None
    return report


_LOCAL = threading.local()  # one model per worker thread: explanation hooks must not be shared


def _model(options: ParticipantOptions):
    from .. import pipeline

    key = (options.model, options.device)
    cache = getattr(_LOCAL, "models", None)
    if cache is None:
        cache = _LOCAL.models = {}
    if key not in cache:
        if options.omp_nthreads:
            import SimpleITK
            import torch

            torch.set_num_threads(options.omp_nthreads)
            SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(options.omp_nthreads)
        ref = options.model if options.model in pipeline.BUNDLED else Path(options.model)
        cache[key] = pipeline.load_model(ref, options.device)
    return cache[key]


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError:  # the work folder on another file system
        shutil.copyfile(src, dst.with_name(f".{dst.name}.tmp"))
        os.replace(dst.with_name(f".{dst.name}.tmp"), dst)


def _export(analysis, scan: BidsScan, options: ParticipantOptions, work: Path) -> dict:
    """The result folder in ``work``, moved file by file into the BIDS layout; the report last."""
    from .. import pipeline
    import nibabel as nib

    from ..outputs import write_bytes_atomic
    from ..io import write_nifti

    report = pipeline.export_analysis(analysis, work, threshold=options.threshold, mode=options.mode)
    anat = scan.anat_dir(options.out_dir)
    anat.mkdir(parents=True, exist_ok=True)
    affine = analysis.card.model_grid.affine
    maps, maps_mni = {}, {}
    for method, name in (report.get("maps") or {}).items():
        maps[method] = f"{scan.prefix}_desc-{method_label(method)}_map.nii.gz"
        _move(work / name, anat / maps[method])
        if method in analysis.maps_model:
            maps_mni[method] = f"{scan.prefix}_space-{SPACE}_desc-{method_label(method)}_map.nii.gz"
            write_nifti(anat / maps_mni[method], nib.Nifti1Image(analysis.maps_model[method].astype("float32"), affine),
                        protect=(str(scan.path),))
    extra = {}
    for key, name, suffix in (("figure", "figure.png", "figure.png"), ("report_pdf", "report.pdf", "report.pdf"),
                              ("faithfulness_figure", "faithfulness.png", "faithfulness.png")):
        if (work / name).is_file():
            extra[key] = f"{scan.prefix}_{suffix}"
            _move(work / name, anat / extra[key])
    report.update(maps=maps, maps_mni=maps_mni, space_mni=SPACE, **extra,
                  Sources=[scan.source(options.bids_dir)],
                  bids={"subject": scan.subject, "session": scan.session, "age": scan.age, "sex": scan.sex})
    write_bytes_atomic(anat / f"{scan.prefix}_brainage.json", json.dumps(report, indent=2).encode())
    return report


def process_scan(scan: BidsScan, options: ParticipantOptions) -> ScanOutcome:
    """One participant job (runs in this process, a worker process or a Dask worker); never raises."""
    from .. import pipeline
    from ..io import load_scan
    from ..outputs import claim, clean_stale_parts

    start = time.perf_counter()
    out_dir = Path(options.out_dir)
    work_root = Path(options.work_dir) if options.work_dir else out_dir / ".bavis-work"
    try:
        with claim(out_dir, scan.prefix) as mine:
            if not mine:
                return ScanOutcome(scan.prefix, str(scan.path), "busy")
            if not options.force and (done := finished_report(scan, out_dir)) is not None:
                return ScanOutcome(scan.prefix, str(scan.path), "skipped", report=done)
            work_root.mkdir(parents=True, exist_ok=True)
            clean_stale_parts(work_root, scan.prefix, before=options.started)
            model = _model(options)
            card = model[1]
            if card.sex_encoding is not None and scan.sex is None:
                raise BidsError(f"the model {card.name} needs the sex: give sub-{scan.subject} a sex (or gender) "
                                "in participants.tsv")
            analysis = pipeline.analyze(load_scan(scan.path), model=model, chronological_age=scan.age, sex=scan.sex,
                                        methods=options.methods, device=options.device, **options.explain)
            work = work_root / scan.prefix
            try:
                report = _export(analysis, scan, options, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return ScanOutcome(scan.prefix, str(scan.path), "done", seconds=time.perf_counter() - start, report=report)
    except Exception as err:  # one line per scan, whatever went wrong, in every failing scan's wording
        from ..summary import failure_reason

        return ScanOutcome(scan.prefix, str(scan.path), "failed", failure_reason(err), time.perf_counter() - start)
