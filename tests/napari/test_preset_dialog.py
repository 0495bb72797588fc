"""The widget's "Load checkpoint…" on released bare weights: it asks for the preset, imports them beside
the file and uses that checkpoint (run under xvfb-run)."""

import torch

from napari_bavis.models.sfcn import SFCN
from napari_bavis.napari import _analysis_widget, _controls, _notify, _preset_dialog


def _pick(widget, monkeypatch, path, answer):
    asked = []

    def get_item(parent, title, label, items, current, editable):
        asked.append(items)
        return (items[0], True) if answer else ("", False)

    monkeypatch.setattr(_controls.QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(_preset_dialog.QInputDialog, "getItem", get_item)
    widget.combo.setCurrentText(_analysis_widget.LOAD_CHECKPOINT)
    widget._on_activated(widget.combo.findText(_analysis_widget.LOAD_CHECKPOINT))
    return asked


def test_plain_state_dict_asks_for_a_preset_and_loads_the_imported_checkpoint(qtbot, tmp_path, monkeypatch):
    weights = tmp_path / "run_20190719_00_epoch_best_mae.p"
    torch.save(torch.nn.DataParallel(SFCN()).state_dict(), weights)
    errors = []
    monkeypatch.setattr(_notify, "show_error", errors.append)
    picker = _analysis_widget.ModelPicker("brain_age", "ds002748", "")
    qtbot.addWidget(picker)
    qtbot.waitUntil(lambda: not picker.inspecting, timeout=30000)

    assert _pick(picker, monkeypatch, weights, answer=False)  # cancelled: nothing imported, previous model kept
    assert not (tmp_path / "run_20190719_00_epoch_best_mae.sfcn-ukb.pt").exists()
    assert picker.combo.currentText() != _analysis_widget.LOAD_CHECKPOINT

    asked = _pick(picker, monkeypatch, weights, answer=True)
    assert any(item.startswith("sfcn-ukb") for item in asked[0])
    imported = tmp_path / "run_20190719_00_epoch_best_mae.sfcn-ukb.pt"
    assert imported.is_file() and picker.model() == str(imported)
    qtbot.waitUntil(lambda: not picker.inspecting, timeout=30000)
    assert "sfcn-ukb" in picker.card_text.text() and not errors
