"""A tiny BIDS dataset made from the phantom generator: sub-01 (one scan, control), sub-02 (two
sessions, patient, ages from sub-02_sessions.tsv), sub-03 (a broken T1w file); participants.tsv.

The phantoms are made on a 6 mm MNI grid and their native (about 1 mm) images resampled to 3 mm
voxels, so one scan takes seconds through the pipeline with the bundled demo model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bids_options import FAST, SCANS


def make_tiny_bids(root: Path) -> Path:
    import nibabel as nib
    import nibabel.processing as nbp

    from napari_bavis.grid import Grid
    from napari_bavis.phantoms import make_subject

    grid = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 6.0)
    for sub, ses, seed, age, sex in SCANS:
        anat = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        native = make_subject(seed, age, sex, 0.0, grid=grid, native=True).t1_native
        name = f"sub-{sub}{'_ses-' + ses if ses else ''}_T1w.nii.gz"
        nib.save(nbp.resample_to_output(native, voxel_sizes=3.0, order=1), anat / name)
    bad = root / "sub-03" / "anat"
    bad.mkdir(parents=True)
    (bad / "sub-03_T1w.nii.gz").write_bytes(b"\x1f\x8b not really a gzip file")
    (root / "participants.tsv").write_text(
        "participant_id\tage\tSex\tgroup\nsub-01\t62\tf\tcontrol\nsub-02\t71\tM\tpatient\nsub-03\t50\tF\tcontrol\n")
    (root / "sub-02" / "sub-02_sessions.tsv").write_text("session_id\tage\nses-01\t71\nses-02\t74\n")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny phantoms", "BIDSVersion": "1.9.0",
                                                               "DatasetDOI": "doi:10.0000/tiny"}))
    return root


@pytest.fixture(scope="session")
def tiny_bids(tmp_path_factory) -> Path:
    return make_tiny_bids(tmp_path_factory.mktemp("bids"))


@pytest.fixture(scope="session")
def participant_run(tiny_bids, tmp_path_factory):
    """(output folder, exit code, stdout, stderr) of one serial participant run over the tiny dataset."""
    import contextlib
    import io
    import os

    from napari_bavis.cli import main

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path_factory.mktemp("derivatives") / "napari-bavis"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        # one thread per scan, as each Dask worker gets in test_dask_backend.py (ITK's registration
        # is not bit-identical across thread counts)
        code = main(["bids", str(tiny_bids), str(out), "participant", "--omp-nthreads", "1", *FAST])
    return out, code, stdout.getvalue(), stderr.getvalue()
