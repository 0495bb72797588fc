"""Does the viewer keep answering during a run on busy cores? A 10 ms QTimer in napari while the
analysis widget runs, with two CPU-bound processes (``python -c "while True: pass"``) on the side.

    QT_API=pyqt6 xvfb-run -a python benchmarks/bench_viewer.py [--scan T1.nii.gz] [--model NAME|ckpt]
                                                                  [--burners 2] [--cancel-at registration]

Prints, with the load average: the longest gap and p99 with no run (the machine alone), during the
computation (the worker process) and while the results are added (napari on the GUI thread), and
how long Cancel took when ``--cancel-at STEP`` is given (until the viewer is as before, and until
the worker process is gone). Next to each longest gap: the GUI thread's own CPU time in that gap
(``time.thread_time``), which the machine's load does not inflate: on a loaded machine the gap is
that CPU time stretched by the other runnable processes. docs/widgets.md quotes the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_SCAN = Path(__file__).resolve().parents[2] / "shared/data/ds002748/sub-01/anat/sub-01_T1w.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scan", default=str(DEFAULT_SCAN))
    parser.add_argument("--model", default=None, help="bundled name or checkpoint (default: the widget's default)")
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--cancel-at", default=None, help="press Cancel when the step label contains this")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="cProfile the GUI thread while the results are added; stats to FILE")
    parser.add_argument("--stages", type=int, default=0, metavar="N",
                        help="also print the N result stages that took the most GUI-thread CPU")
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.open(args.scan, plugin="napari-bavis")
    _, widget = viewer.window.add_plugin_dock_widget("napari-bavis", "Brain age analysis")
    from napari_bavis import pipeline

    model = args.model or pipeline.DEFAULT_MODEL  # not the model the settings remember
    if Path(model).is_file():
        widget.model.set_checkpoint(model)
    else:
        widget.model.set_model(model)

    ticks, steps, cpus = [], [], []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: (ticks.append(time.perf_counter()), steps.append(widget.step_label.text()),
                                   cpus.append(time.thread_time())))

    def spin(until, timeout=1800.0):
        end = time.perf_counter() + timeout
        while not until() and time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.002)

    spin(lambda: not widget.model.inspecting)
    stage_cpu = []  # (ms of GUI-thread CPU, stage number, where the stage's code is)
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
    if args.stages or args.profile:
        def timed_stages(value, make=widget._result_stages):
            def timed(stage, number):
                def call():
                    if profile is not None and number == 0:
                        profile.enable()
                    began = time.thread_time()
                    try:
                        stage()
                    finally:
                        code = getattr(stage, "__code__", None)
                        where = f"{stage.__qualname__}:{code.co_firstlineno}" if code else repr(stage)
                        stage_cpu.append((1000 * (time.thread_time() - began), number, where))
                return call
            return [timed(stage, number) for number, stage in enumerate(make(value))]
        widget._result_stages = timed_stages
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    try:
        timer.start()
        t0 = time.perf_counter()
        spin(lambda: time.perf_counter() - t0 > 5.0)
        idle, idle_cpu = np.diff(ticks), np.diff(cpus)
        ticks.clear(), steps.clear(), cpus.clear()
        start, start_cpu = time.perf_counter(), time.thread_time()
        widget.run()
        cancel_took = gone_took = None
        if args.cancel_at:
            spin(lambda: args.cancel_at in widget.step_label.text())
            worker = widget._worker.run
            pressed = time.perf_counter()
            widget.cancel()
            spin(lambda: not widget.running)
            cancel_took = time.perf_counter() - pressed
            spin(lambda: worker._proc.poll() is not None, timeout=30.0)
            gone_took = time.perf_counter() - pressed
        spin(lambda: not widget.running)
        timer.stop()
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
    finally:
        for proc in burners:
            proc.kill()
    gaps = np.diff(np.array([start, *ticks]))
    gaps_cpu = np.diff(np.array([start_cpu, *cpus]))
    adding = next((i for i, s in enumerate(steps) if s.startswith("adding the results")), len(gaps))
    load = os.getloadavg()
    print(f"scan {Path(args.scan).name}; model {widget.model.combo.currentText()}; {args.burners} burners; "
          f"load average {load[0]:.1f} / {load[1]:.1f}; {os.cpu_count()} cores; run {time.perf_counter() - start:.1f} s")
    parts = (("no run", idle, idle_cpu), ("computing", gaps[:adding], gaps_cpu[:adding]),
             ("adding the results", gaps[adding:], gaps_cpu[adding:]))
    for name, part, cpu in parts:
        if part.size:
            print(f"{name:>20}: {part.size} ticks, longest gap {1000 * part.max():.0f} ms "
                  f"(GUI-thread CPU in it {1000 * cpu[np.argmax(part)]:.0f} ms; most CPU in one gap {1000 * cpu.max():.0f} ms), "
                  f"p99 {1000 * np.percentile(part, 99):.0f} ms, ticks > 100 ms late: {np.mean(part > 0.11) * 100:.1f} %")
    for i in np.argsort(gaps)[::-1][:5]:
        print(f"    gap {1000 * gaps[i]:.0f} ms ({1000 * gaps_cpu[i]:.0f} ms GUI CPU) ending at step '{steps[i]}'")
    if cancel_took is not None:
        print(f"cancel at '{args.cancel_at}' took {1000 * cancel_took:.0f} ms (worker process gone after "
              f"{1000 * gone_took:.0f} ms); step now '{widget.step_label.text()}'; "
              f"layers {[layer.name for layer in viewer.layers]}")
    for ms, number, where in sorted(stage_cpu, reverse=True)[:args.stages]:
        print(f"    stage {number:2d}: {ms:5.0f} ms GUI CPU  {where}")
    print(f"status: {widget.step_label.text()}")
    viewer.close()


if __name__ == "__main__":
    main()
