"""The main job in a viewer: the synthetic native-space sample and the plugin's widgets.

``--out DIR`` (used when there is no display) renders the same view off-screen,
saves ``DIR/screenshot.png`` and exits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_bavis.napari.demo", description=__doc__)
    parser.add_argument("--out", help="write a screenshot here and exit instead of opening a window")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(title="napari-bavis demo")
    viewer.open_sample("napari-bavis", "synthetic_native")
    viewer.window.add_plugin_dock_widget("napari-bavis", "Brain display")
    viewer.window.resize(1400, 900)
    viewer.reset_view()
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
    viewer.close()
    print(f"napari-bavis demo: no display, so the viewer was rendered off-screen; screenshot: {shot.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
