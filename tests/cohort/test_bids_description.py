"""dataset_description.json names the code only by a URL the package declares, and a failed BIDS scan's
reason reads like every other failing scan's (one wording, summary.failure_reason)."""

from __future__ import annotations

import email.message
import json
from importlib import metadata

import pytest

from napari_bavis.cohort import bids
from napari_bavis.errors import BavisError
from napari_bavis.summary import failure_line


def _metadata_with(monkeypatch, **fields):
    meta = email.message.Message()
    for key, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            meta[key.replace("_", "-")] = value
    real = metadata.metadata
    monkeypatch.setattr(metadata, "metadata", lambda name: meta if name == "napari-bavis" else real(name))


def test_code_url_is_left_out_when_the_package_declares_none(monkeypatch, tmp_path):
    _metadata_with(monkeypatch, Name="napari-bavis")
    assert bids.code_url() is None
    generated = bids.dataset_description(tmp_path)["GeneratedBy"][0]
    assert "CodeURL" not in generated and generated["Name"] == "napari-bavis"


def test_code_url_is_the_declared_source_url(monkeypatch, tmp_path):
    _metadata_with(monkeypatch, Name="napari-bavis",
                   Project_URL=["Documentation, https://docs.example/bavis", "Source, https://git.example/bavis"])
    assert bids.dataset_description(tmp_path)["GeneratedBy"][0]["CodeURL"] == "https://git.example/bavis"
    _metadata_with(monkeypatch, Name="napari-bavis", Home_page="https://home.example/bavis")
    assert bids.code_url() == "https://home.example/bavis"


def test_the_installed_package_description_is_valid_json(tmp_path):
    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "DatasetDOI": "doi:1"}))
    description = bids.dataset_description(tmp_path)
    assert json.loads(json.dumps(description))["SourceDatasets"][0]["DOI"] == "doi:1"
    assert description["GeneratedBy"][0].get("CodeURL") == bids.code_url()


def test_a_failed_bids_scan_reads_like_every_failing_scan(tmp_path):
    from napari_bavis import pipeline

    missing = tmp_path / "no-such-model.pt"
    with pytest.raises(BavisError) as err:
        pipeline.load_model(missing, "cpu")
    (tmp_path / "out").mkdir()
    scan = bids.BidsScan(tmp_path / "sub-01_T1w.nii.gz", "01", None, "sub-01")
    outcome = bids.process_scan(scan, bids.ParticipantOptions(str(tmp_path), str(tmp_path / "out"), model=str(missing)))
    assert outcome.status == "failed" and "\n" not in outcome.error
    assert f"{outcome.path}: {outcome.error}" == failure_line(outcome.path, err.value)


def test_bids_map_labels_are_the_tables_file_stems():
    from napari_bavis import methods

    labels = [bids.method_label(name) for name in methods.ALL_METHODS]
    assert all(label.isalnum() for label in labels) and len(set(labels)) == len(labels)
    for name, label in zip(methods.ALL_METHODS, labels):  # the file stem, less what BIDS forbids in a label
        stem = methods.file_stem(name)
        assert label == stem if stem.isalnum() else label == stem.replace("-", "")
