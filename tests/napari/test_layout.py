"""The docked widgets fit a 1280×800 screen with no clipped text (run under xvfb-run).

The window is resized to 1280×800 with the analysis and the compare widget docked, a real analysis
and a real comparison are run on tiny models and 4 mm scans, the window is grabbed to PNGs under
tmp_path (``$BAVIS_LAYOUT_PNG``, ``$BAVIS_QC_PNG`` and ``$BAVIS_COMPARE_PNG`` get copies, for a person
to look at), and every visible label, check box, button and combo box in our docks is asserted to be
at least as large as its size hint (a word-wrapped label or a picture: as high as its height for its
width) and inside the dock's width — i.e. nothing is elided or cut off.
"""

import os
import shutil

from qtpy.QtCore import QPoint
from qtpy.QtWidgets import QCheckBox, QComboBox, QHeaderView, QLabel, QPushButton, QTableWidget, QWidget

from napari_bavis.napari import _layers
from napari_bavis.napari._side_by_side import _grid as grid  # viewer.canvas.grid (viewer.grid is deprecated)

from test_analysis_widget import errors, open_scan, tiny_files  # noqa: F401  (fixtures)
from test_compare_widget import siamese_files  # noqa: F401  (module fixture)

SCREEN = (1280, 800)


def clipped_widgets(root) -> list[str]:
    """Visible text widgets under ``root`` smaller than their text needs (a description of each)."""
    bad = []
    viewport = root.scroll.viewport()
    for widget in root.findChildren((QLabel, QCheckBox, QPushButton, QComboBox)):
        if not widget.isVisible() or widget.width() <= 0:
            continue
        if isinstance(widget, QLabel) and not widget.text() and (widget.pixmap() is None or widget.pixmap().isNull()):
            continue
        if isinstance(widget, QLabel) and widget.hasHeightForWidth():  # word-wrapped text, scaled picture
            need_w, need_h = widget.minimumSizeHint().width(), widget.heightForWidth(widget.width())
        else:
            hint = widget.sizeHint()
            need_w, need_h = hint.width(), hint.height()
        text = widget.currentText() if isinstance(widget, QComboBox) else getattr(widget, "text", lambda: "")()
        if widget.width() < need_w or widget.height() < need_h:
            bad.append(f"{type(widget).__name__} {text[:50]!r}: {widget.width()}×{widget.height()} < {need_w}×{need_h}")
        right = widget.mapTo(viewport, QPoint(widget.width(), 0)).x()
        if right > viewport.width():  # cut off on the right (the docks scroll vertically only)
            bad.append(f"{type(widget).__name__} {text[:50]!r}: ends at x={right} > {viewport.width()}")
    return bad


def widest(root, n=5) -> list[str]:
    """The visible widgets under ``root`` that need the most width (what to fix when a dock is too wide)."""
    rows = [(w.minimumSizeHint().width(), type(w).__name__, (w.text() if hasattr(w, "text") else "")[:40])
            for w in root.findChildren(QWidget) if w.isVisible()]
    return [f"{r[0]} {r[1]} {r[2]!r}" for r in sorted(rows, key=lambda r: -r[0])[:n]]


def _save(window, png, env: str) -> None:
    """The window as a PNG under tmp_path, and a copy where ``$env`` says (for a person to look at)."""
    assert window.grab().save(str(png))
    if os.environ.get(env):
        shutil.copy(png, os.environ[env])


def _settle(qtbot, ms=300):
    qtbot.wait(ms)


def test_docked_window_fits_1280x800_without_clipped_text(make_napari_viewer, qtbot, tiny_files, siamese_files,  # noqa: F811
                                                           errors, tmp_path):
    ckpt, scan_path = tiny_files
    siamese, path_a, path_b = siamese_files
    viewer = make_napari_viewer(show=True)  # offscreen canvases render black under Xvfb
    window = viewer.window._qt_window
    scan = open_scan(viewer, scan_path)
    open_scan(viewer, path_a)
    open_scan(viewer, path_b)
    dock_a, analysis = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain age analysis")
    dock_c, compare = viewer.window.add_plugin_dock_widget("napari-bavis", "Compare two scans")
    window.showNormal()
    window.resize(*SCREEN)
    _settle(qtbot)
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1], (window.width(), window.height())

    analysis.model.set_checkpoint(ckpt)
    compare.model.set_checkpoint(siamese)
    qtbot.waitUntil(lambda: not analysis.model.inspecting and not compare.model.inspecting, timeout=60000)
    analysis.image.select(scan)
    analysis.age.setValue(95.0)  # outside the training ages: a warning line in the results
    analysis.run()
    qtbot.waitUntil(lambda: not analysis.running, timeout=180000)
    compare.image_a.setCurrentText(path_a.name.split(".")[0])
    compare.image_b.setCurrentText(path_b.name.split(".")[0])
    compare.run()
    qtbot.waitUntil(lambda: not compare.running, timeout=180000)
    assert errors == []
    # the comparison side by side: scan A and its maps in the first cell, scan B and its maps in the second
    assert grid(viewer).enabled
    stride = grid(viewer).stride
    cells = [[layer.name for layer in list(viewer.layers)[i * stride:(i + 1) * stride]] for i in range(2)]
    assert all(not layer.visible for layer in _layers.result_layers(viewer, "analysis"))  # no extra cells
    for cell, name in zip(cells, compare._names):
        assert cell[0] == name and all(n.startswith(f"{name} · ") for n in cell[1:]) and len(cell) > 1, cells
    _settle(qtbot, 500)
    _save(window, tmp_path / "compare.png", "BAVIS_COMPARE_PNG")
    assert clipped_widgets(compare) == []
    compare.side_by_side.setChecked(False)  # back to one view for the analysis
    assert not grid(viewer).enabled
    analysis.qc_mask.setChecked(True)  # the brain mask's outline over the scan and its map
    _settle(qtbot, 500)

    # both docks usable: they share the right dock area (napari alone left the first one ~100 px)
    assert min(dock_a.height(), dock_c.height()) > 0.4 * (dock_a.height() + dock_c.height())
    # still on the screen after the results filled the docks
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1], (window.width(), window.height(),
                                                                          widest(analysis), widest(compare))
    _save(window, tmp_path / "layout.png", "BAVIS_LAYOUT_PNG")
    for dock, env in ((analysis, "BAVIS_ANALYSIS_DOCK_PNG"), (compare, "BAVIS_COMPARE_DOCK_PNG")):
        dock.scroll.verticalScrollBar().setValue(dock.scroll.verticalScrollBar().maximum())  # the lower half
        _settle(qtbot, 200)
        _save(dock.scroll.widget(), tmp_path / f"{env.lower()}.png", env)  # the whole content, scrolled or not
    analysis.qc_registration.setChecked(True)  # the registration checkerboard on top
    _settle(qtbot, 500)
    _save(window, tmp_path / "qc.png", "BAVIS_QC_PNG")

    for name, dock in (("analysis", analysis), ("compare", compare)):
        assert clipped_widgets(dock) == [], name
        # the tables' columns can be resized by the user
        for table in dock.findChildren(QTableWidget):
            assert table.horizontalHeader().sectionResizeMode(0) == QHeaderView.ResizeMode.Interactive
        # long content scrolls (vertically) instead of stretching the window
        assert dock.scroll.widget().height() >= dock.scroll.viewport().height()
        assert dock.scroll.widget().width() <= dock.scroll.viewport().width()
    # the QC layers: a grey checkerboard and the mask outline
    roles = {layer.metadata["bavis_qc"] for layer in _layers.result_layers(viewer, "analysis", "qc")}
    assert roles == {"brain mask", _layers.REGISTRATION_CHECK}
