import os

import numpy as np
import pytest

os.environ.setdefault("NAPARI_BAVIS_CONFIG_DIR", os.path.join(os.path.dirname(__file__), ".config-unused"))


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Preferences go to a per-test folder, never the user's."""
    monkeypatch.setenv("NAPARI_BAVIS_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
