"""Time File › Open Sample › napari-bavis: the first open generates and caches, later opens read back.

    QT_API=pyqt6 xvfb-run -a python benchmarks/bench_samples.py young_healthy young_healthy synthetic_native
    NAPARI_BAVIS_SAMPLE_CACHE=/tmp/empty-cache ... (a fresh cache: the first open generates)

Run it twice to see a new process reading the cache (docs/widgets.md "Samples").
"""

import sys
import time

import napari


def main(keys) -> None:
    viewer = napari.Viewer(show=False)
    for key in keys:
        start = time.perf_counter()
        viewer.open_sample("napari-bavis", key)
        print(f"{key}: {time.perf_counter() - start:.2f} s", flush=True)
        viewer.layers.clear()
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1:] or ["young_healthy", "young_healthy"])
