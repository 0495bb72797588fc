"""User preferences that persist between sessions (a small JSON file; no Qt)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .methods import DEFAULT_METHODS
from .pipeline import DEFAULT_MODEL

DEFAULTS = {
    "convention": "neurological",  # or "radiological": patient's right on the screen's left
    "model": DEFAULT_MODEL,  # the real-brain model; the phantom demo asks for "demo" itself
    "device": "auto",
    "methods": list(DEFAULT_METHODS),
    "threshold": 5.0,  # regions.DEFAULT_THRESHOLD: the top 5 % of each map (docs/explain.md, "Threshold")
    "threshold_mode": "top_percent",
    "export_dir": "",
}


def config_path() -> Path:
    base = os.environ.get("NAPARI_BAVIS_CONFIG_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_config_dir("napari-bavis")
    return Path(base) / "settings.json"


def load() -> dict:
    """Saved preferences over the defaults; a damaged file falls back to the defaults."""
    values = dict(DEFAULTS)
    try:
        stored = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return values
    if isinstance(stored, dict):
        values.update({k: v for k, v in stored.items() if k in DEFAULTS})
        if "threshold" in stored and "threshold_mode" not in stored:
            values["threshold_mode"] = "value"  # saved before the mode was stored: it was a map value
    return values


def save(**changes) -> dict:
    values = load()
    values.update({k: v for k, v in changes.items() if k in DEFAULTS})
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(values, indent=2))
        os.replace(tmp, path)
    except OSError:
        pass  # preferences are a convenience: never fail an action because they cannot be stored
    return values
