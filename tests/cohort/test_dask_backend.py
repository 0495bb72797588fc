"""The participant jobs on a Dask LocalCluster (2 workers) give what the serial run gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")


def _files(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "group" not in p.parts)


def test_dask_local_cluster_equals_the_serial_run(participant_run, tiny_bids, tmp_path):
    import nibabel as nib

    from napari_bavis.cohort.backends import run_participants
    from napari_bavis.cohort.bids import ParticipantOptions, find_bids_scans, write_dataset_description
    from napari_bavis.cohort.group import run_group

    serial = participant_run[0]
    out = tmp_path / "dask"
    write_dataset_description(out, tiny_bids)
    options = ParticipantOptions(str(tiny_bids), str(out), model="demo", methods=("gradcam++",),
                                 explain={"region_importance": False, "faithfulness": False}, omp_nthreads=1)
    seen = []
    outcomes = run_participants(find_bids_scans(tiny_bids), options, dask_local=2, dask_processes=False,
                                on_outcome=seen.append)
    assert [o.status for o in outcomes] == ["done", "done", "done", "failed"] and len(seen) == 4
    assert outcomes[3].error and "\n" not in outcomes[3].error
    assert _files(out) == _files(serial)
    for path in _files(serial):
        if path.endswith("_brainage.json"):
            a, b = (json.loads((root / path).read_text()) for root in (serial, out))
            assert a["brain_age"] == pytest.approx(b["brain_age"], abs=1e-4)
            assert a["maps"] == b["maps"] and a["bids"] == b["bids"]
        elif path.endswith(".nii.gz"):
            a, b = (np.asarray(nib.load(root / path).dataobj) for root in (serial, out))
            assert np.allclose(a, b, atol=1e-4)
    tables = []
    for root in (serial, out):
        run_group(tiny_bids, root, fit_on="all")
        tables.append((root / "group" / "brainage.tsv").read_text())
    assert tables[0] == tables[1]


def test_unusable_dask_options_are_one_line_usage_errors(tiny_bids, tmp_path, capsys):
    from napari_bavis.cli import main

    for option in (["--dask", "local:0"], ["--dask", "slurm"], ["--dask-scheduler", "foo://127.0.0.1:1"]):
        with pytest.raises(SystemExit) as exit_:
            main(["bids", str(tiny_bids), str(tmp_path / "out"), "participant", "--model", "demo", *option])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, option
