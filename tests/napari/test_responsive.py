"""Issue 13: the viewer keeps answering during a run on busy cores, Cancel acts at once, closing at
any moment exits 0, and results belong to the scan they were computed from (run under xvfb-run)."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from test_analysis_widget import (  # noqa: F401
    _fake_analysis, blob_scan, counted_analyze, dock, map_layers, open_scan, tiny_files, use_fake_model,
)

from napari_bavis import runner
from napari_bavis.napari import _analysis_widget, _gc_pause, _layers, _notify

BURN = "while True: pass"


@pytest.fixture
def notes(monkeypatch):
    """Every notification the widget shows, by kind, instead of napari's dialogs."""
    shown = {"error": [], "warning": [], "info": []}
    for kind in shown:
        monkeypatch.setattr(_notify, f"show_{kind}", shown[kind].append)
    return shown


@pytest.fixture
def burners():
    """Two CPU-bound processes, as on a shared 2-core workstation."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def _idle_gaps(qtbot, seconds=3.0):
    """The same timer with no run: what the busy machine alone does to the event loop."""
    from qtpy.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    qtbot.wait(int(seconds * 1000))
    timer.stop()
    return np.diff(np.array(ticks))


def _ticks_during(widget, qtbot, timeout_ms=180000):
    """Gaps between 10 ms timer ticks during one run, the GUI thread's own CPU time in each gap
    (``time.thread_time``: what the viewer itself did, which the machine's load does not inflate),
    split by phase: computing (in the worker), adding the results (GUI thread: napari's layers and
    the maps panel, one piece per turn), and the turn after "done"."""
    from qtpy.QtCore import QTimer

    ticks, steps, cpus = [], [], []

    def tick():
        ticks.append(time.perf_counter())
        cpus.append(time.thread_time())
        steps.append(widget.step_label.text())

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    start, start_cpu = time.perf_counter(), time.thread_time()
    timer.start()
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout_ms)
    qtbot.wait(60)  # a few ticks after the end: the last turn is short now, and a tick must see "done in"
    timer.stop()
    gaps, cpu = np.diff(np.array([start, *ticks])), np.diff(np.array([start_cpu, *cpus]))
    worst = np.argsort(gaps)[::-1][:4]
    print("\nlongest gaps: " + "; ".join(f"{1000 * gaps[i]:.0f} ms ({1000 * cpu[i]:.0f} ms GUI CPU) before "
                                         f"'{steps[i]}'" for i in worst))
    adding = next(i for i, step in enumerate(steps) if step.startswith("adding the results"))
    done = next(i for i, step in enumerate(steps) if step.startswith("done in "))  # not the pipeline's step "done"
    return {"computing": (gaps[:adding], cpu[:adding]), "adding": (gaps[adding:done], cpu[adding:done]),
            "panel": (gaps[done:done + 1], cpu[done:done + 1])}


def test_no_stall_during_a_run_with_two_cpu_burners(make_napari_viewer, qtbot, tiny_files, notes, burners):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    scan = open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, ckpt)
    widget.run()  # a first run draws the map layers for the first time (napari's one-off costs)
    qtbot.waitUntil(lambda: not widget.running, timeout=180000)
    idle = _idle_gaps(qtbot)
    phases = _ticks_during(widget, qtbot)
    assert notes["error"] == [] and widget.analysis is not None
    gaps, cpu = (np.concatenate(parts) for parts in zip(*phases.values()))
    # What the machine alone does to the event loop, now: the idle viewer's longest gap, and the
    # longest gap of the run in which the GUI thread itself did (almost) nothing, waiting for a core
    starved = float(gaps[cpu < 0.005].max(initial=0.0))
    print(f"idle with 2 burners: longest gap {1000 * idle.max():.0f} ms; run with 2 burners (load "
          f"{os.getloadavg()[0]:.1f}): {gaps.size} ticks, longest idle-thread gap {1000 * starved:.0f} ms; "
          + "; ".join(f"{name}: longest gap {1000 * g.max():.0f} ms, most GUI CPU in a gap {1000 * c.max():.0f} ms"
                      for name, (g, c) in phases.items()))
    assert phases["computing"][0].size > 50
    # The worker process never holds the viewer, and the results go in one short piece per event-loop
    # turn: 150 ms, unless the machine alone already stalls the viewer longer (other users' jobs on
    # top of the burners); then twice that; plus twice the GUI thread's own CPU in the gap (a loaded
    # machine stretches a turn's own work; a gap with no work of the viewer's, e.g. a wait on the
    # GUI thread, gets no allowance)
    bound = max(0.150, 2 * idle.max(), 2 * starved)
    for name in ("computing", "adding"):
        wall, own = phases[name]
        assert (wall <= bound + 2 * own).all(), (name, 1000 * wall.max(), 1000 * own[np.argmax(wall)])
    # What the viewer itself does in one turn, whatever the load: little while computing, one
    # layer's worth (napari's own cost) while adding
    assert phases["computing"][1].max() <= 0.050 and phases["adding"][1].max() <= 0.100
    # The maps panel's part (map list, layer controls, colormaps, the colour bar made hidden, the map,
    # its bar and the legend text shown, regions)
    # comes in turns of its own among the "adding" ones (MapsPanel.set_maps_steps); what is left
    # after "done" is one ordinary turn
    wall, own = phases["panel"]
    assert (wall <= bound + 2 * own).all() and own.max() <= 0.100, (1000 * wall.max(), 1000 * own.max())
    text = widget.results.toPlainText()  # the result names its scan and model, so do the map layers
    assert text.startswith(f"Scan: {scan.name} · model tiny")
    assert all(layer.name.startswith(scan.name) and layer.name.endswith("· tiny") for layer in map_layers(viewer))


def test_cancel_during_registration_acts_within_two_seconds(make_napari_viewer, qtbot, tiny_files, notes, burners):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    open_scan(viewer, scan_path)
    widget = dock(viewer, qtbot, ckpt)
    before = [layer.name for layer in viewer.layers]
    widget.run()
    qtbot.waitUntil(lambda: "registration" in widget.step_label.text(), timeout=120000)
    worker = widget._worker.run
    start = time.perf_counter()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=5000)
    took = time.perf_counter() - start
    print(f"\ncancel during registration took {1000 * took:.0f} ms")
    assert took <= 1.0  # the issue asks for 2 s in the test; the viewer is told at once (one poll)
    assert widget.step_label.text() == "cancelled" and notes["error"] == []
    assert [layer.name for layer in viewer.layers] == before and widget.analysis is None
    assert widget.run_button.isEnabled() and widget.image.isEnabled()
    qtbot.waitUntil(lambda: worker._proc.poll() is not None, timeout=int(1000 * (runner.GRACE_S + 3)))


def test_cancel_while_the_results_are_added_leaves_no_layer(make_napari_viewer, qtbot, blob_scan, counted_analyze, notes):
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    stages = widget._result_stages
    # start, readout, then the first map made, its visual, its controls and those put in napari's stack
    widget._result_stages = lambda analysis: [*list(stages(analysis))[:6], widget.cancel_button.click]
    stack = viewer.window._qt_viewer.controls
    slots = stack.count()
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    assert widget.step_label.text() == "cancelled" and notes["error"] == []
    assert notes["info"] == ["napari-bavis: analysis cancelled; nothing was added"]
    assert map_layers(viewer) == [] and widget.analysis is None and widget.run_button.isEnabled()
    assert stack.count() == slots  # the map's prepared controls left napari's stack with it
    assert not _gc_pause.held()  # the run's hold on full collections ended with it


def test_the_maps_are_cut_where_the_worker_cut_them(make_napari_viewer, qtbot, blob_scan, counted_analyze, notes):
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    widget.maps.set_threshold(7.0, "top_percent")
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    threshold, mode, cuts = widget.analysis.cutoffs  # taken by the worker, not recomputed on the GUI thread
    assert (threshold, mode) == (7.0, "top_percent") and set(cuts) == set(widget.analysis.maps)
    for method, values in widget.analysis.maps.items():
        assert cuts[method] == pytest.approx(widget.maps.cutoff(values))
    assert all(layer.colormap.name.endswith(f"{cuts[layer.metadata['bavis_method']]:.4f}") for layer in map_layers(viewer))


def test_full_collections_are_held_only_during_a_run(make_napari_viewer, qtbot, blob_scan, counted_analyze, notes):
    import gc

    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    widget.run()
    assert _gc_pause.held() and gc.get_freeze_count() > 0  # what existed at Run is not walked
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    assert not _gc_pause.held() and gc.get_freeze_count() == 0 and map_layers(viewer)


def test_removing_the_scan_mid_run_drops_the_results_with_one_notification(make_napari_viewer, qtbot, tiny_files, notes):
    ckpt, scan_path = tiny_files
    viewer = make_napari_viewer()
    scan = open_scan(viewer, scan_path)
    other = viewer.add_image(np.zeros((20, 20, 20), np.float32), name="other scan")
    widget = dock(viewer, qtbot, ckpt)
    widget.image.select(scan)
    widget.run()
    qtbot.waitUntil(lambda: widget.step_label.text().startswith("preprocess"), timeout=120000)
    viewer.layers.remove(scan)
    qtbot.waitUntil(lambda: not widget.running, timeout=10000)
    qtbot.wait(200)
    assert len(notes["warning"]) == 1 and scan.name in notes["warning"][0]
    assert notes["error"] == [] and notes["info"] == []
    assert map_layers(viewer) == [] and _layers.result_layers(viewer, "analysis") == []
    assert [layer.name for layer in viewer.layers] == [other.name] and widget.analysis is None


def test_the_image_combo_follows_the_active_layer(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer()
    first = viewer.add_image(np.zeros((8, 8, 8), np.float32), name="first")
    second = viewer.add_image(np.ones((8, 8, 8), np.float32), name="second")
    widget = dock(viewer, qtbot)
    for layer in (first, second, first):
        viewer.layers.selection.active = layer
        assert widget.image.currentText() == layer.name
    viewer.add_points(np.zeros((1, 3)), name="points")  # not a scan: the combo keeps its scan
    assert widget.image.currentText() == first.name


def test_the_result_text_names_the_scan_and_the_model():
    from napari_bavis.io import scan_from_image
    import nibabel as nib

    scan = scan_from_image(nib.Nifti1Image(np.arange(1080, dtype=np.float32).reshape(10, 12, 9), np.eye(4)))
    scan.label = "sub-07 T1w"
    text = _analysis_widget.result_text(_fake_analysis(scan, {}))
    assert text.splitlines()[0].startswith("Scan: sub-07 T1w · model ")


def test_sex_is_disabled_with_a_reason_for_a_model_without_a_sex_input(make_napari_viewer, qtbot, tiny_files, notes):
    ckpt, _ = tiny_files  # the tiny model is built with use_sex=False: its card has no sex encoding
    widget = dock(make_napari_viewer(), qtbot, ckpt)
    qtbot.waitUntil(lambda: widget.model.card is not None, timeout=30000)
    assert not widget.sex.isEnabled() and "takes no sex input" in widget.sex.toolTip()
    assert widget.sex.currentText() == "not given"


def test_regions_panel_follows_a_deleted_map_layer(make_napari_viewer, qtbot, blob_scan, counted_analyze, notes):
    viewer = make_napari_viewer()
    open_scan(viewer, blob_scan)
    widget = dock(viewer, qtbot)
    use_fake_model(widget)
    for method, box in widget.methods.items():
        box.setChecked(method in ("gradcam", "smoe"))
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    entry = widget.maps.selected_entry()  # its first regions came from the worker, equal to a fresh computation
    assert entry["first_regions"] is not None and entry["first_regions"][0] == entry["method"]
    _, fresh = widget.analysis.regions(entry["method"], widget.maps.threshold.value(), widget.maps.mode_key(),
                                       widget.maps.min_size.value())
    assert [r.volume_mm3 for r in widget.maps.regions] == [r.volume_mm3 for r in fresh] and fresh
    shown = entry["layer"].name
    viewer.layers.remove(shown)
    qtbot.waitUntil(lambda: widget.maps.regions_of.count() == 1, timeout=5000)
    assert shown not in [widget.maps.regions_of.itemText(i) for i in range(widget.maps.regions_of.count())]
    widget.maps.set_threshold(0.5, "value")  # no stale entry: regions of the remaining map only
    widget.maps.update_regions()
    assert widget.maps.selected_entry()["layer"].name != shown and notes["error"] == []
    viewer.layers.remove(widget.maps.selected_entry()["layer"].name)
    qtbot.waitUntil(lambda: widget.maps.regions_of.count() == 0, timeout=5000)
    assert widget.maps.table.rowCount() == 0 and _layers.result_layers(viewer, "analysis", "regions") == []


CLOSE_SCRIPT = textwrap.dedent("""
    import sys, time
    import napari
    from qtpy.QtWidgets import QApplication

    mode, ckpt, scan = sys.argv[1:4]
    viewer = napari.Viewer(show=True)
    viewer.open(scan, plugin="napari-bavis")
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain age analysis")

    def spin(until, timeout=120.0):
        end = time.perf_counter() + timeout
        while not until() and time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.01)

    if mode == "mid-run":
        widget.model.set_checkpoint(ckpt)
        spin(lambda: not widget.model.inspecting)
        widget.run()
        spin(lambda: widget.step_label.text().startswith("preprocess"))
        print("WORKER", widget._worker.run.pid, flush=True)
    viewer.close()
""")


@pytest.mark.parametrize("mode", ["right-after-docking", "mid-run"])
def test_closing_the_viewer_exits_zero_and_leaves_no_worker(tiny_files, tmp_path, mode):
    ckpt, scan_path = tiny_files
    script = tmp_path / "close.py"
    script.write_text(CLOSE_SCRIPT)
    done = subprocess.run([sys.executable, str(script), mode, str(ckpt), str(scan_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "has been deleted" not in done.stderr, done.stderr[-2000:]
    if mode == "mid-run":
        pid = int(done.stdout.split("WORKER")[1].split()[0])
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the worker process went with the viewer
