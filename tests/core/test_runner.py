"""napari_bavis.runner without Qt: a job in a child process, its messages, cancel and terminate."""

import os
import time

from napari_bavis import runner


def _finish(run, timeout=60.0):
    end, messages = time.monotonic() + timeout, []
    while time.monotonic() < end:
        messages += run.poll()
        if messages and messages[-1][0] != "progress":
            return messages
        time.sleep(0.01)
    raise AssertionError(f"no final message: {messages}")


def test_a_job_runs_in_another_process_and_reports_progress_and_result():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 0.1}, kind="process")
    messages = _finish(run)
    assert messages[0] == ("progress", "busy", 0, 1)
    status, pid = messages[-1]
    assert status == "ok" and pid != os.getpid() and pid == run.pid


def test_cancel_that_the_step_ignores_terminates_the_process_within_the_grace():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60, "honour_cancel": False}, kind="process")
    assert _wait_progress(run)
    start = time.monotonic()
    run.cancel()
    status, err = _finish(run, timeout=10)[-1]
    took = time.monotonic() - start
    assert status == "cancelled" and took < runner.GRACE_S + 1.0
    assert run._proc.poll() is not None  # the process is gone


def test_a_step_that_checks_cancel_stops_before_the_grace():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60}, kind="process")
    assert _wait_progress(run)
    start = time.monotonic()
    run.cancel()
    status, err = _finish(run, timeout=10)[-1]
    assert status == "cancelled" and "cancelled by the user" in str(err) and time.monotonic() - start < runner.GRACE_S


def test_an_unknown_job_is_one_crash_line_not_a_hang():
    status, err = _finish(runner.start("napari_bavis.runner:no_such_job", {}, kind="process"))[-1]
    assert status == "crash" and err.type_name == "AttributeError" and "no_such_job" in str(err)


def test_stop_ends_the_process_and_sends_nothing():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60, "honour_cancel": False}, kind="process")
    assert _wait_progress(run)
    run.stop()
    assert run._proc.poll() is not None and run.poll() == []


def _wait_progress(run, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(m[0] == "progress" for m in run.poll()):
            return True
        time.sleep(0.01)
    return False
