"""Real-data training on synthetic stand-ins: BIDS participants, the ridge ensemble, cross-validation and its table."""

import json
import math

import numpy as np
import pytest
import torch

from napari_bavis import models
from napari_bavis.atlases import atlas_on_grid
from napari_bavis.grid import Grid
from napari_bavis.training.data import TrainingError
from napari_bavis.training.real_brain_age import (
    BASELINE_ATLAS,
    POOL,
    cross_validate,
    fit_ensemble,
    format_table,
    pooled,
    predict_ensemble,
    region_gm_features,
    summarise,
)
from napari_bavis.training.real_data import Participant, RealRecord, dataset_info, read_participants

GRID_12MM = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 12.0)  # 16x19x16: not divisible by the pool


# --- BIDS participants --------------------------------------------------------------------------

def _touch_nifti(path):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), str(path))


def _bids(tmp_path, header, rows, scans):
    (tmp_path / "participants.tsv").write_text(
        "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    for rel in scans:
        _touch_nifti(tmp_path / rel)
    return tmp_path


def test_read_participants_keeps_rows_with_an_age_and_a_t1(tmp_path):
    header = ["participant_id", "Age", "Sex", "gender", "Group"]
    rows = [
        ["sub-01", "39", "m", "", "control"],
        ["sub-02", "47", "F", "", "depr"],
        ["sub-03", "26.5", "male", "", "control"],
        ["sub-04", "61", "", "female", ""],   # empty sex column: the gender column is read
        ["sub-05", "n/a", "M", "", "control"],  # no age: skipped
        ["sub-06", "33", "f", "", "control"],   # no T1 on disk: skipped
        ["sub-07", "nan", "M", "", "control"],  # not a finite age: skipped
        ["sub-08", "50", "x", "", "control"],   # unknown sex value: kept with sex None
    ]
    scans = ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz",
             "sub-03/ses-1/anat/sub-03_ses-1_T1w.nii.gz",  # a session folder
             "sub-04/anat/sub-04_T1w.nii", "sub-05/anat/sub-05_T1w.nii.gz",
             "sub-06/anat/sub-06_T2w.nii.gz",  # not a T1
             "sub-07/anat/sub-07_T1w.nii.gz", "sub-08/anat/sub-08_T1w.nii.gz"]
    people = read_participants(_bids(tmp_path, header, rows, scans))
    assert [p.subject for p in people] == ["sub-01", "sub-02", "sub-03", "sub-04", "sub-08"]
    assert [p.age for p in people] == [39.0, 47.0, 26.5, 61.0, 50.0]
    assert [p.sex for p in people] == ["M", "F", "M", "F", None]
    assert [p.group for p in people] == ["control", "depr", "control", None, "control"]
    assert all(p.t1.is_file() and "_T1w.nii" in p.t1.name and p.subject in p.t1.name for p in people)
    assert people[2].t1.parent.parent.name == "ses-1"
    assert people[0].extra["group"] == "control"


def test_gender_column_alone_and_mixed_case(tmp_path):
    rows = [["sub-01", "20", "M"], ["sub-02", "30", "Female"], ["sub-03", "40", "F"], ["sub-04", "50", "MALE"]]
    scans = [f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz" for i in range(1, 5)]
    people = read_participants(_bids(tmp_path, ["participant_id", "age", "Gender"], rows, scans))
    assert [p.sex for p in people] == ["M", "F", "F", "M"]
    assert all(p.group is None for p in people)


def test_read_participants_one_line_errors(tmp_path):
    with pytest.raises(TrainingError) as err:
        read_participants(tmp_path)
    assert "participants.tsv" in str(err.value) and "\n" not in str(err.value)
    _bids(tmp_path, ["participant_id", "age"], [["sub-01", "n/a"], ["sub-02", "30"]], ["sub-01/anat/sub-01_T1w.nii.gz"])
    with pytest.raises(TrainingError) as err:
        read_participants(tmp_path)  # sub-01 has no age, sub-02 no scan
    assert "\n" not in str(err.value)


def test_dataset_info_reads_name_licence_and_citation(tmp_path):
    (tmp_path / "dataset_description.json").write_text(json.dumps({
        "Name": "Tiny study", "License": "CC0", "DatasetDOI": "doi:10.18112/openneuro.ds000001.v1.0.0",
        "ReferencesAndLinks": ["https://doi.org/10.1155/2021/1", 7]}), encoding="utf-8")
    info = dataset_info(tmp_path)
    assert info["name"] == "Tiny study" and info["licence"] == "CC0"
    # the BIDS "doi:" URI form is not doubled; a non-string reference is dropped
    assert info["citation"] == "dataset doi:10.18112/openneuro.ds000001.v1.0.0; https://doi.org/10.1155/2021/1"

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "dataset_description.json").write_text(json.dumps({"DatasetDOI": "10.1/abc"}), encoding="utf-8")
    assert dataset_info(bare)["citation"] == "dataset doi:10.1/abc"

    empty = tmp_path / "my-dataset"
    empty.mkdir()
    assert dataset_info(empty) == {"name": "my-dataset", "licence": "unknown", "citation": "no citation given"}


# --- the ensemble on synthetic records -----------------------------------------------------------

def _records(n=40, seed=0, grid=GRID_12MM, noise=1.0):
    """Records whose model input carries ``(age - 45) / 10 * pattern`` plus noise and whose GM shrinks with age."""
    rng = np.random.default_rng(seed)
    shape = grid.shape
    pattern = rng.normal(size=shape)
    ages = rng.uniform(20, 80, n)
    groups = ["control", "patient", None]
    out = []
    for i, age in enumerate(ages):
        x = (age - 45) / 10 * pattern + rng.normal(scale=noise, size=shape)
        gm = np.clip(rng.normal(0.5, 0.05, shape) * (1.3 - 0.008 * age), 0, 1).astype(np.float32)
        wm = rng.uniform(0.2, 0.4, shape).astype(np.float32)
        csf = rng.uniform(0.1, 0.3, shape).astype(np.float32)
        person = Participant(f"sub-{i:02d}", None, float(age), "F" if i % 2 else "M", groups[i % 3], {})
        out.append(RealRecord(person, {"gm": gm, "wm": wm, "csf": csf}, np.zeros(0),
                              {"affine_scale_determinant": float(rng.uniform(0.8, 1.2))}, {},
                              model_input=x.astype(np.float32)))
    return out


def test_pooled_matches_linear3d_pooling_and_block_means():
    x = np.random.default_rng(1).normal(size=(3, *GRID_12MM.shape)).astype(np.float32)
    features = pooled(x)
    pooled_shape = tuple(math.ceil(s / POOL) for s in GRID_12MM.shape)
    assert features.shape == (3, int(np.prod(pooled_shape)))
    model = models.build("linear3d", volume_shape=list(GRID_12MM.shape), pool=POOL, members=1)
    with torch.no_grad():
        expected = model.pool(torch.as_tensor(x)[:, None]).flatten(1).double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    # by hand: the first block and the far corner block (partial: 16 = 4 * 4, 19 = 4 * 4 + 3)
    np.testing.assert_allclose(features[:, 0], x[:, :4, :4, :4].mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(features[:, -1], x[:, 12:, 16:, 12:].mean(axis=(1, 2, 3)), rtol=1e-5)


def test_a_fit_loaded_into_linear3d_predicts_what_predict_ensemble_predicts():
    records = _records(n=24, seed=2)
    ages = np.array([r.participant.age for r in records])
    inputs = np.stack([r.model_input for r in records])
    x = pooled(inputs)
    fit = fit_ensemble(x, ages, members=3, seed=0)
    assert fit["weights"].shape == (3, x.shape[1]) and fit["biases"].shape == (3,)
    np.testing.assert_allclose(fit["centre"], x.mean(axis=0))
    assert not np.allclose(fit["weights"][0], fit["weights"][1])  # members fit different subsets
    pred = predict_ensemble(fit, x)
    assert np.abs(pred - ages).mean() < 3.0  # in-sample on a strong planted signal

    pooled_shape = tuple(math.ceil(s / POOL) for s in GRID_12MM.shape)
    model = models.build("linear3d", volume_shape=list(GRID_12MM.shape), pool=POOL, members=3).eval()
    model.set_fit(fit["centre"].reshape(pooled_shape), fit["weights"].reshape(3, *pooled_shape), fit["biases"])
    with torch.no_grad():
        t = torch.as_tensor(inputs)[:, None]
        np.testing.assert_allclose(model(t)[:, 0].double().numpy(), pred, atol=1e-3)
        members = model.forward_members(t).double().numpy()
    np.testing.assert_allclose(members, (x - fit["centre"]) @ fit["weights"].T + fit["biases"], atol=1e-3)


def test_region_gm_features_by_hand():
    records = _records(n=3, seed=3)
    labels = atlas_on_grid(BASELINE_ATLAS, GRID_12MM)
    ids = [v for v in np.unique(labels) if v]
    assert len(ids) > 50  # the baseline atlas survives a 12 mm grid
    feats = region_gm_features(records, GRID_12MM)
    assert feats.shape == (3, 2 + len(ids))
    r = records[1]
    ml = 12.0 ** 3 / 1000.0 * r.qc["affine_scale_determinant"]
    gm = r.tissues["gm"].astype(float)
    icv = sum(r.tissues[k].astype(float).sum() for k in ("gm", "wm", "csf"))
    assert feats[1, 0] == pytest.approx(gm.sum() * ml, rel=1e-5)
    assert feats[1, 1] == pytest.approx(gm.sum() / icv, rel=1e-5)
    np.testing.assert_allclose(feats[1, 2:], [gm[labels == v].sum() * ml for v in ids], rtol=1e-4)


def test_cross_validation_beats_the_mean_on_a_planted_signal():
    records = _records(n=40, seed=4)
    cv = cross_validate(records, GRID_12MM, folds=5, seed=0, members=3)
    ages = cv["ages"]
    np.testing.assert_array_equal(ages, [r.participant.age for r in records])
    preds = cv["predictions"]
    assert set(preds) == {"model", "mean", "ridge_gm_volumes"}
    mae = {k: np.abs(v - ages).mean() for k, v in preds.items()}
    assert mae["model"] < 0.5 * mae["mean"], mae
    assert mae["ridge_gm_volumes"] < mae["mean"], mae  # GM shrinks with age in the synthetic tissues
    assert np.corrcoef(preds["model"], ages)[0, 1] > 0.9
    assert cv["uncertainty"].shape == ages.shape and (cv["uncertainty"] > 0).all()

    # out-of-fold: subjects sharing a "mean" prediction are one fold, and it is the mean of the others
    folds = {}
    for i, v in enumerate(preds["mean"]):
        folds.setdefault(round(float(v), 9), []).append(i)
    assert len(folds) == 5 and sorted(len(f) for f in folds.values()) == [8] * 5
    for value, members in folds.items():
        others = np.setdiff1d(np.arange(len(ages)), members)
        assert value == pytest.approx(ages[others].mean())


def test_without_a_signal_the_model_does_not_beat_the_mean_by_much():
    records = _records(n=30, seed=5)
    rng = np.random.default_rng(6)
    for r in records:  # same tissues, but a model input with no age in it
        r.model_input = rng.normal(size=GRID_12MM.shape).astype(np.float32)
    cv = cross_validate(records, GRID_12MM, folds=5, seed=0, members=2)
    mae = {k: np.abs(v - cv["ages"]).mean() for k, v in cv["predictions"].items()}
    assert mae["model"] > 0.8 * mae["mean"], mae  # no leakage of the held-out ages into the fit


def test_summarise_gives_mae_r_and_the_mean_gap_per_group():
    ages = np.array([30.0, 40.0, 50.0, 60.0, 70.0])
    gaps = np.array([-1.0, 3.0, 1.0, 5.0, 2.0])
    groups = ["control", "patient", "control", "patient", None]
    records = [RealRecord(Participant(f"sub-{i}", None, a, None, g, {}), {}, np.zeros(0), {}, {})
               for i, (a, g) in enumerate(zip(ages, groups))]
    cv = {"ages": ages, "predictions": {"shifted": ages + gaps, "flat": np.full(5, 50.0)}}
    table = summarise(cv, records)
    assert set(table) == {"shifted", "flat"}
    row = table["shifted"]
    assert row["mae"] == pytest.approx(np.abs(gaps).mean())
    assert row["r"] == pytest.approx(np.corrcoef(ages + gaps, ages)[0, 1])
    assert row["mean_gap_control"] == pytest.approx(0.0)
    assert row["mean_gap_patient"] == pytest.approx(4.0)
    assert row["mean_gap_unknown"] == pytest.approx(2.0)
    assert math.isnan(table["flat"]["r"])  # a constant predictor has no correlation
    assert table["flat"]["mean_gap_control"] == pytest.approx(10.0)  # 50 - mean(30, 50) = 10

    text = format_table(table)
    lines = text.splitlines()
    assert len(lines) == 2 + len(table)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["predictor", *row]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "shifted"
    assert [float(c) for c in cells[1:]] == pytest.approx([row[c] for c in header[1:]], abs=0.005)
    assert "nan" in lines[3]
