"""End to end with a published model: a randomly initialised SFCN saved as Peng et al. release theirs
(nn.DataParallel state_dict) -> ``models import --preset sfcn-ukb`` -> analysis of a scan in a scanner pose.
The full SFCN at 160x192x160 is run once (module fixture); the released weights are not on these machines."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_bavis import cli, pipeline
from napari_bavis.models.sfcn import SFCN
from napari_bavis.samples import mni_t1, to_scanner_space

MARKER_X_MM = (-46.0, -36.0)  # left hemisphere


def _scan_with_left_marker() -> nib.Nifti1Image:
    """nilearn's MNI T1 (2 mm) with a bright 10 mm cube at x -46..-36 mm (left), moved into a scanner pose."""
    img = mni_t1(2)
    data = np.array(img.dataobj, np.float32)
    ijk = np.indices(data.shape).reshape(3, -1)
    xyz = (img.affine[:3, :3] @ ijk + img.affine[:3, 3:4]).reshape((3,) + data.shape)
    cube = ((xyz[0] >= MARKER_X_MM[0]) & (xyz[0] <= MARKER_X_MM[1]) & (np.abs(xyz[1] + 5) <= 5)
            & (np.abs(xyz[2] - 15) <= 5))
    data[cube] = 1.6 * data.max()
    return to_scanner_space(nib.Nifti1Image(data, img.affine), rotation_deg=(7, -4, 5), translation_mm=(5, -8, 10),
                            voxel_size=(2.0, 2.0, 2.2), storage="LPS", seed=5)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfcn")
    torch.manual_seed(0)
    torch.save(torch.nn.DataParallel(SFCN()).state_dict(), root / "run_20190719_00_epoch_best_mae.p")
    assert cli.main(["models", "import", str(root / "run_20190719_00_epoch_best_mae.p"),
                     "--preset", "sfcn-ukb", "--out", str(root / "sfcn-ukb.pt")]) == 0
    nib.save(_scan_with_left_marker(), root / "sub-01_T1w.nii.gz")
    return root


@pytest.fixture(scope="module")
def analysis(imported):
    return pipeline.analyze(imported / "sub-01_T1w.nii.gz", imported / "sfcn-ukb.pt", chronological_age=63.0,
                            device="cpu", region_importance=False, faithfulness=False)


def test_analysis_gives_brain_age_gap_uncertainty_and_all_maps(analysis):
    pred = analysis.prediction
    assert 42.0 < pred.brain_age < 82.0 and pred.gap == pytest.approx(pred.brain_age - 63.0)
    assert pred.uncertainty is not None and 0.0 < pred.uncertainty < 40.0  # SD of the bin distribution
    assert set(analysis.maps) == set(pipeline.DEFAULT_METHODS)
    for name, values in analysis.maps.items():
        assert values.shape == analysis.scan.data.shape and values.max() > 0, name
        assert analysis.maps_model[name].shape == (160, 192, 160)
    assert analysis.card.name == "sfcn-ukb" and analysis.card.source["preset"] == "sfcn-ukb"


def test_scanner_pose_model_input_has_the_left_marker_on_the_left_of_fsl_storage(imported, analysis):
    pre = pipeline.preprocess_scan(pipeline.as_scan(imported / "sub-01_T1w.nii.gz"), analysis.card)
    x = pre.model_input
    hot = np.argwhere(x > 0.7 * x.max())
    assert len(hot) > 100
    centre = hot.mean(axis=0)
    assert centre[0] > 100  # FSL order: x = 79 - i, so the left hemisphere is the high end of axis 0
    x_mm = (pre.grid.affine[:3, :3] @ centre + pre.grid.affine[:3, 3])[0]
    assert x_mm == pytest.approx(np.mean(MARKER_X_MM), abs=4.0)
    assert pre.record["steps"]["smoothing_normalisation"]["normalisation"]["statistics"] == "template_grid"


def test_cli_analyze_with_the_imported_model_writes_age_and_maps(imported, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["analyze", str(imported / "sub-01_T1w.nii.gz"), "--model", str(imported / "sfcn-ukb.pt"),
                     "--age", "63", "--out", str(out), "--device", "cpu", "--quiet", "--methods", "gradcam++",
                     "--no-region-importance", "--no-faithfulness"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(next(out.glob("*/report.json")).read_text())
    assert report["brain_age"] is not None and report["brain_age_gap"] is not None
    assert report["brain_age_uncertainty"] > 0 and report["maps"]
    assert report["model"]["source"]["preset"] == "sfcn-ukb" and len(report["model"]["source"]["sha256"]) == 64
    assert report["model"]["input_space"]["storage"] == "LAS"
