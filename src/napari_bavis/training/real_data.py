"""Real T1 scans of a BIDS dataset (e.g. OpenNeuro ds002748) as training data.

Each scan goes through ``napari_bavis.preprocess`` exactly as ``pipeline.analyze`` runs it (the
same reader, the same steps), once: the tissue maps on the model grid, the QC figures and the
timings are cached per scan, keyed by the scan file and the preprocessing spec. Training and
cross-validation then read the cache; the last steps (smoothing, normalisation) are applied the
way ``preprocess`` ends, so a trained model sees what the pipeline will feed it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..grid import Grid
from .data import TrainingError

#: Column names accepted for sex in participants.tsv, and the values read as female / male.
SEX_COLUMNS = ("sex", "gender")
FEMALE, MALE = {"f", "female", "w", "woman"}, {"m", "male", "man"}


@dataclass
class Participant:
    subject: str  # "sub-01"
    t1: Path
    age: float
    sex: str | None  # "F", "M" or None
    group: str | None
    extra: dict


def read_participants(bids_dir) -> list[Participant]:
    """Participants with a T1w scan and an age, from ``participants.tsv`` and ``sub-*/[ses-*/]anat``."""
    bids_dir = Path(bids_dir)
    table = bids_dir / "participants.tsv"
    if not table.is_file():
        raise TrainingError(f"{bids_dir} has no participants.tsv (needed for the ages)")
    out = []
    for row in participant_rows(table):
        subject = row.get("participant_id", "")
        try:
            age = float(row.get("age", ""))
        except ValueError:
            continue
        if not math.isfinite(age):  # "nan" parses as a float; a NaN age would break every fit
            continue
        scans = sorted((bids_dir / subject).glob("**/anat/*_T1w.nii*")) if subject else []
        if not scans:
            continue
        out.append(Participant(subject, scans[0], age, sex_of(row), row.get("group") or None, row))
    if not out:
        raise TrainingError(f"no participant in {table} has both an age and a T1w scan")
    return out


def participant_rows(table) -> list[dict]:
    """The rows of a ``participants.tsv``: column names lower-cased, values stripped ("" when empty)."""
    with open(table, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in rows]


def sex_of(row: dict) -> str | None:
    """"F", "M" or None from a participants row's ``sex`` or ``gender`` column (any case)."""
    value = next((row[c].lower() for c in SEX_COLUMNS if row.get(c)), "")
    return "F" if value in FEMALE else "M" if value in MALE else None


def dataset_info(bids_dir) -> dict:
    """Name, licence and citation from ``dataset_description.json`` (what a model card must name)."""
    try:
        d = json.loads((Path(bids_dir) / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        d = {}
    # BIDS asks for the DOI as a URI ("doi:10..." or "https://doi.org/10..."); bare "10..." is older usage
    doi = re.sub(r"^(doi:\s*|https?://(dx\.)?doi\.org/)", "", str(d.get("DatasetDOI") or "").strip(), flags=re.I)
    refs = [r for r in d.get("ReferencesAndLinks") or [] if isinstance(r, str)]
    citation = "; ".join(x for x in ([f"dataset doi:{doi}"] if doi else []) + refs)
    return {"name": d.get("Name") or Path(bids_dir).name, "licence": d.get("License") or "unknown",
            "citation": citation or "no citation given"}


def default_real_cache_dir() -> Path:
    env = os.environ.get("NAPARI_BAVIS_CACHE")
    return (Path(env) if env else Path(tempfile.gettempdir()) / "napari-bavis-cache") / "real"


def _preprocess_code_hash() -> str:
    """A hash of the preprocessing code: a cache made by other code is not reused."""
    folder = Path(__file__).resolve().parents[1] / "preprocess"
    digest = hashlib.sha1()
    for source in sorted(folder.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def _cache_key(path: Path, spec) -> str:
    stat = path.stat()
    text = json.dumps({"file": str(path.resolve()), "size": stat.st_size, "mtime": int(stat.st_mtime),
                       "spec": spec.to_dict(), "reads": "the file's own voxels",
                       "code": _preprocess_code_hash()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _preprocess_one(args) -> str:
    """Worker: one scan through the pipeline's reader and ``preprocess``; writes its cache file."""
    t1, spec_dict, out = args
    import SimpleITK as sitk
    import torch

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    torch.set_num_threads(1)
    from ..errors import BavisError
    from ..io import load_scan
    from ..pipeline import preprocess_scan

    out = Path(out)
    tmp = out.with_suffix(".tmp.npz")
    try:
        pre = preprocess_scan(load_scan(t1), spec_dict)
    except BavisError as err:
        np.savez(tmp, error=np.array(str(err)))
        os.replace(tmp, out)
        return str(out)
    np.savez(
        tmp,
        model_input=pre.model_input,
        gm=pre.tissues["gm"].astype(np.float32),
        wm=pre.tissues["wm"].astype(np.float32),
        csf=pre.tissues["csf"].astype(np.float32),
        registered=np.asarray(pre.registered_t1.dataobj, np.float32),
        template_to_scan=pre.template_to_scan,
        qc=np.array(json.dumps(_jsonable(pre.qc))),
        timings=np.array(json.dumps(pre.timings)),
    )
    os.replace(tmp, out)
    return str(out)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


@dataclass
class RealRecord:
    participant: Participant
    tissues: dict  # "gm", "wm", "csf" on the grid
    registered: np.ndarray
    qc: dict
    timings: dict
    error: str | None = None
    model_input: np.ndarray | None = None  # exactly what the pipeline feeds the model


def preprocessed_participants(participants, card_like: dict, cache_dir=None, workers: int = 2,
                              progress: bool = False) -> list[RealRecord]:
    """Every participant's scan preprocessed as ``card_like`` (a model card dict) asks, from the cache
    where it is there. Scans the pipeline refuses come back with ``error`` set (one line)."""
    from ..preprocess import PreprocessSpec
    from .data import map_with_bar

    spec = PreprocessSpec.from_card(card_like)
    folder = Path(cache_dir) if cache_dir is not None else default_real_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{p.subject}-{_cache_key(p.t1, spec)}.npz" for p in participants]
    todo = [(str(p.t1), card_like, str(path)) for p, path in zip(participants, paths) if not path.is_file()]
    map_with_bar(_preprocess_one, todo, "preprocessing real scans", workers, progress)
    records = []
    for p, path in zip(participants, paths):
        with np.load(path) as z:
            if "error" in z:
                records.append(RealRecord(p, {}, np.zeros(0), {}, {}, str(z["error"])))
                continue
            records.append(RealRecord(p, {k: z[k] for k in ("gm", "wm", "csf")}, z["registered"],
                                      json.loads(str(z["qc"])), json.loads(str(z["timings"])), None,
                                      z["model_input"] if "model_input" in z else None))
    return records


def gm_model_input(record: RealRecord, grid: Grid, smoothing_fwhm_mm: float, intensity_normalisation: str,
                   modulation: bool = False) -> np.ndarray:
    """The GM model input of a cached scan, finished as ``preprocess`` finishes a ``gm`` input."""
    from ..preprocess.resample import normalise, smooth
    from ..preprocess.templates import template_on_grid

    gm = record.tissues["gm"]
    if modulation:
        gm = gm * float(record.qc["affine_scale_determinant"])
    mask = np.asarray(template_on_grid("mask", grid)) >= 0.5
    out, _ = normalise(smooth(gm, grid, smoothing_fwhm_mm), intensity_normalisation, mask)
    return np.ascontiguousarray(out, dtype=np.float32)
