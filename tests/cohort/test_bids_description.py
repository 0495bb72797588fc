"""dataset_description.json names the code only by a URL the package declares, and a failed BIDS scan's
reason reads like every other failing scan's (one wording, summary.failure_reason)."""

from __future__ import annotations

import email.message
import errno
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


@pytest.mark.parametrize("err", [BavisError("not a NIfTI\nfile"), OSError(errno.ENOSPC, "No space left on device"),
                                 ValueError("odd\x1b[31m")])
def test_a_failed_bids_scan_reads_like_every_failing_scan(err):
    text = bids.failure_text(err)
    assert failure_line("sub-01_T1w.nii.gz", err) == f"sub-01_T1w.nii.gz: {text}"
    assert "\n" not in text and "\x1b" not in text
