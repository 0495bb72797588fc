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


def _gone_after(run, timeout=10.0) -> float:
    start = time.monotonic()
    while run._proc.poll() is None and time.monotonic() - start < timeout:
        time.sleep(0.01)
    return time.monotonic() - start


def test_cancel_acts_at_once_and_a_step_that_ignores_it_is_terminated_after_the_grace():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60, "honour_cancel": False}, kind="process")
    assert _wait_progress(run)
    start = time.monotonic()
    run.cancel()  # returns without waiting for the child
    returned = time.monotonic() - start
    status, err = _finish(run, timeout=10)[-1]
    assert status == "cancelled" and "cancelled by the user" in str(err)
    assert returned < 0.05 and time.monotonic() - start < 0.1  # the caller is told at once
    assert _gone_after(run) < runner.GRACE_S + 2.0  # the child is ended in the background, within the grace
    assert run.poll() == []  # and nothing follows


def test_a_step_that_checks_cancel_ends_its_process_before_the_grace():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60}, kind="process")
    assert _wait_progress(run)
    start = time.monotonic()
    run.cancel()
    status, err = _finish(run, timeout=10)[-1]
    assert status == "cancelled" and "cancelled by the user" in str(err) and time.monotonic() - start < 0.1
    assert _gone_after(run) < runner.GRACE_S + 1.0
    assert run._proc.returncode in (0, 3)  # it ended itself (0: the job returned; 3: its listener), not terminated


def test_cancel_right_after_start_does_not_corrupt_the_job_or_print_a_traceback():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60, "honour_cancel": False}, kind="process")
    run.cancel()  # the job may not be fully written yet: the cancel byte waits for it
    status, _ = _finish(run, timeout=10)[-1]
    assert status == "cancelled" and _gone_after(run) < runner.GRACE_S + 2.0


def test_an_unknown_job_is_one_crash_line_not_a_hang():
    status, err = _finish(runner.start("napari_bavis.runner:no_such_job", {}, kind="process"))[-1]
    assert status == "crash" and err.type_name == "AttributeError" and "no_such_job" in str(err)


def test_stop_ends_the_process_and_sends_nothing():
    run = runner.start("napari_bavis.runner:busy_job", {"seconds": 60, "honour_cancel": False}, kind="process")
    assert _wait_progress(run)
    start = time.monotonic()
    run.stop()  # terminates it and reaps it in the background
    assert time.monotonic() - start < 0.05 and run.poll() == []
    assert _gone_after(run) < 2.0 and run.poll() == []


def _wait_progress(run, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(m[0] == "progress" for m in run.poll()):
            return True
        time.sleep(0.01)
    return False
