"""The main job in a viewer: the "old AD-like" phantom sample (75 y) and the plugin's widgets.

The brain-age analysis widget is docked; when the bundled demo model is installed (or
``--checkpoint`` names one) the analysis runs on the sample and its maps are shown.
``--out DIR`` (used when there is no display) renders the same view off-screen, saves
``DIR/screenshot.png``, exports the analysis (maps in the scan's space, figure, report) to
``DIR/results/`` and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_bavis.napari.demo", description=__doc__)
    parser.add_argument("--out", help="write a screenshot here and exit instead of opening a window")
    parser.add_argument("--checkpoint", help="run the analysis with this checkpoint instead of the bundled demo model")
    parser.add_argument("--age", type=float, default=None, help="chronological age of the sample, in years (default: the phantom's)")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(title="napari-bavis demo")
    from ..phantoms import SAMPLE_KINDS

    sample = SAMPLE_KINDS["old AD-like"]
    viewer.open_sample("napari-bavis", "old_ad_like")
    viewer.window.add_plugin_dock_widget("napari-bavis", "Brain display")
    _, analysis = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain age analysis")
    viewer.window.resize(1400, 900)
    viewer.reset_view()
    age = args.age if args.age is not None else sample["age"]
    _run_analysis(viewer, analysis, args.checkpoint, age, sample["sex"], wait=bool(args.out))
    if not args.out:
        napari.run()
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "screenshot.png"
    from qtpy.QtWidgets import QApplication

    for _ in range(5):  # let the docks lay themselves out before grabbing the window
        QApplication.processEvents()
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    print(f"napari-bavis demo: no display, so the viewer was rendered off-screen; screenshot: {shot.resolve()}")
    status = 0
    if analysis.analysis is not None:
        from .. import pipeline

        maps = analysis.maps  # the cut shown (a map value or the top k %), as the widget's Export… passes it
        report = pipeline.export_analysis(analysis.analysis, out / "results", threshold=float(maps.threshold.value()),
                                          mode=maps.mode_key(), min_size_mm3=float(maps.min_size.value()))
        from ..summary import report_line  # the CLI's wording: raw and bias-corrected gap, model, warnings

        print(f"napari-bavis demo: {report_line(report)}; maps, figure and report: {(out / 'results').resolve()}")
    else:
        status = 1
        print("napari-bavis demo: the analysis did not produce results (see the messages above)")
    viewer.close()
    return status


def _run_analysis(viewer, widget, checkpoint, age, sex, wait: bool) -> None:
    """Run the docked analysis on the sample when a model is at hand; show the strongest region."""
    from .. import pipeline

    if checkpoint:
        widget.model.set_checkpoint(checkpoint)
    elif "demo" in pipeline.bundled_models():
        widget.model.set_model("demo")
    else:
        print("napari-bavis demo: the bundled demo model is not installed; press Run with your own checkpoint")
        return
    if age is not None:
        widget.age.setValue(age)
    if sex in ("F", "M"):
        widget.sex.setCurrentText(sex)
    if not wait:
        widget.model.combo.setFocus()
        widget.run()  # the viewer opens at once; the maps appear when the worker is done
        return
    from qtpy.QtWidgets import QApplication

    while widget.model.inspecting:
        QApplication.processEvents()
    widget.run()
    if not widget.wait(600):
        print("napari-bavis demo: the analysis did not finish within 10 minutes")
        return
    if widget.maps.regions:  # the panel shows one map (the others hidden); its regions' outlines on top
        widget.maps.go_to_region(0)
    for _ in range(10):
        QApplication.processEvents()


if __name__ == "__main__":
    sys.exit(main())
