"""What the maps panel's part of adding a result costs on the GUI thread: ``MapsPanel.set_maps``
(one map shown, its colour bar and legend, the regions table) and the event-loop turn after it, for
one map at 1 mm with three activated regions, with the region outlines made lazily (the default:
no Labels layer until shown) and made at once (as before issue 12).

    QT_API=pyqt6 xvfb-run -a python benchmarks/bench_overlay.py [--repeats 2]

The regions are given precomputed, as the worker process hands them over. Prints the load average;
docs/widgets.md quotes the figures.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _map(shape):
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    values = np.zeros(shape, np.float32)
    for centre in ((60, 100, 60), (120, 100, 120), (90, 160, 90)):
        r = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
        values = np.maximum(values, np.clip(1 - r / 25.0, 0, 1))
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_bavis.napari import _layers
    from napari_bavis.napari._maps_panel import MapsPanel
    from napari_bavis.regions import activated_regions

    shape = (182, 218, 182)
    values = _map(shape)
    geometry = {"scale": (1.0,) * 3, "translate": (0.0,) * 3, "axis_labels": ("S", "A", "R"),
                "units": ("mm",) * 3, "metadata": {"bavis_source": {}}}
    viewer = napari.Viewer(show=True)
    viewer.add_image(np.random.default_rng(0).random(shape, np.float32), name="scan")
    results = {False: [], True: []}
    for repeat in range(args.repeats):
        for outlines in (False, True):
            tag = f"bench {repeat} {outlines}"
            panel = MapsPanel(viewer, tag)
            panel.outlines.setChecked(outlines)
            layer = _layers.put_layer(viewer, values, _layers.map_layer_kwargs(geometry, tag, 0.5, tag, "gradcam++"))
            for _ in range(5):
                QApplication.processEvents()
            cut = panel.cutoff(values)
            labels, table = activated_regions(values, np.eye(4), cut, panel.min_size.value())
            entry = {"layer": layer, "values": values, "affine": np.eye(4), "geometry": geometry, "method": "gradcam++",
                     "scan": "scan", "first_regions": ("gradcam++", float(cut), float(panel.min_size.value()), labels, table)}
            start = time.perf_counter()
            panel.set_maps([entry])
            QApplication.processEvents()
            results[outlines].append(time.perf_counter() - start)
            for made in _layers.result_layers(viewer, tag):
                viewer.layers.remove(made)
            panel.deleteLater()
    viewer.close()
    load = os.getloadavg()[0]
    for outlines, times in results.items():
        label = "outlines made at once" if outlines else "outlines lazy (default)"
        print(f"{label}: set_maps + its event-loop turn, 1 mm map: "
              + ", ".join(f"{1000 * t:.0f}" for t in times) + f" ms (load {load:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
