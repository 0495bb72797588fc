"""A headless install (no napari, no Qt binding) runs the CLI: napari's plugin convention is that a
plugin never forces a Qt binding into a user's environment, and a cluster node has none.

The CLI runs in a subprocess in which every import of a Qt binding, qtpy, magicgui, vispy or napari
raises ImportError, as it would where they are not installed; the package's metadata is checked too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

BLOCKED = ("PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "magicgui", "vispy", "napari", "superqt", "app_model")

RUNNER = r"""
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (blocked by the headless test)")
        return None
sys.meta_path.insert(0, Block())
from napari_bavis.cli import main
code = main(sys.argv[2:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("LOADED:" + ",".join(loaded))
sys.exit(code)
"""


def test_cli_analyze_runs_with_qt_and_napari_unavailable(tmp_path, good_scans, tiny_model):
    scan = good_scans[0]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, ",".join(BLOCKED), "analyze", str(scan), "--out", str(out),
         "--model", str(tiny_model), "--sex", "F", "--no-region-importance", "--no-faithfulness"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOADED:\n" in proc.stdout or proc.stdout.rstrip().endswith("LOADED:")
    (report,) = list(out.glob("*/report.json"))
    assert json.loads(report.read_text())["brain_age"] is not None


def test_core_dependencies_carry_no_qt_binding_and_all_brings_napari():
    requires = metadata.requires("napari-bavis") or []
    core = [r for r in requires if "extra ==" not in r]
    names = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in core}
    assert not names & {"pyqt5", "pyqt6", "pyside2", "pyside6", "napari"}, names
    extras = [r for r in requires if 'extra == "all"' in r]
    assert any(r.lower().startswith("napari[all]") for r in extras), extras
