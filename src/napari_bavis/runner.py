"""Runs one job (pipeline.analyze, pipeline.compare, reading a model card) in a separate process.

Why a process and not a thread: preprocessing and the model hold the GIL for long stretches and
start many native threads; in the viewer's own interpreter they starve its event loop (the viewer
froze for up to 2 s per step on a busy machine, issue 13). A child interpreter cannot. It also makes
Cancel immediate at any step: ``cancel()`` returns at once and the next ``poll()`` reports
"cancelled" (nothing of the run is waited for on the caller's thread); the child is asked to stop
(an Event the pipeline checks between steps, and its stdin closes) and, if it has not ended within
``grace_s``, a background thread terminates it, wherever it is (inside N4 or a registration).

No Qt here: the widget polls :meth:`Run.poll` from a timer. The wire is the child's stdin (the
job, then a cancel byte) and a private copy of its stdout (pickled messages; the child's own
prints go to stderr). The child exits when its stdin closes, so a viewer that dies leaves no worker.

Messages (``poll()`` returns them as tuples):
``("progress", step, done, total)``, then one final ``("ok", value)``, ``("cancelled", err)``,
``("error", BavisError)`` or ``("crash", exception)``.

``ThreadRun`` is the same interface in a thread of this interpreter, for tests that patch the
pipeline in-process and for ``BAVIS_WORKER=thread``.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import weakref

from .errors import BavisError, Cancelled

log = logging.getLogger(__name__)

#: How long a cancelled child may take to end by itself before it is terminated (its result is
#: dropped either way; this only bounds how long it keeps a core busy).
GRACE_S = 0.5
_LIVE: weakref.WeakSet = weakref.WeakSet()


class WorkerCrash(Exception):
    """An unexpected failure in the worker, carried over as its type name and message."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self):  # pickled from the worker: both fields, not only the message
        return WorkerCrash, (self.type_name, str(self))


def default_kind() -> str:
    return "thread" if os.environ.get("BAVIS_WORKER", "").lower() == "thread" else "process"


def resolve(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _outcome(call, kwargs: dict, progress, cancel) -> tuple:
    try:
        return "ok", call(progress=progress, cancel=cancel, **kwargs)
    except Cancelled as err:
        return "cancelled", err
    except BavisError as err:
        return "error", err
    except Exception as err:  # an unexpected failure still becomes one line, never a dialog
        log.exception("napari-bavis worker failed")
        return "crash", WorkerCrash(type(err).__name__, str(err))


class _Base:
    def __init__(self) -> None:
        self._messages: queue.Queue = queue.Queue()
        self.finished = False
        self.cancelled = False

    def poll(self) -> list[tuple]:
        if self.cancelled and not self.finished:  # cancel() acts at once: nothing more is waited for
            self.finished = True
            return [("cancelled", Cancelled("cancelled by the user"))]
        out = []
        while True:
            try:
                msg = self._messages.get_nowait()
            except queue.Empty:
                break
            if self.finished:
                continue
            if msg[0] != "progress":
                self.finished = True
            out.append(msg)
        return out


class ThreadRun(_Base):
    """The job in a daemon thread of this interpreter (cancel only between steps)."""

    kind = "thread"

    def __init__(self, ref, kwargs: dict):
        super().__init__()
        call = resolve(ref) if isinstance(ref, str) else ref
        self._event = threading.Event()

        def progress(step, done, total):
            if self.finished:
                raise Cancelled("the run was abandoned")
            self._messages.put(("progress", str(step), int(done), int(total)))

        def target():
            self._messages.put(_outcome(call, kwargs, progress, self._event))

        threading.Thread(target=target, name="bavis-job", daemon=True).start()

    def cancel(self) -> None:
        """The thread is abandoned (its next progress call raises Cancelled); poll() says "cancelled"."""
        self._event.set()
        self.cancelled = True

    def stop(self) -> None:
        self._event.set()
        self.finished = True


class ProcessRun(_Base):
    """The job in a child interpreter (``python -c 'from napari_bavis.runner import child_main; ...'``)."""

    kind = "process"

    def __init__(self, ref: str, kwargs: dict, grace_s: float = GRACE_S):
        super().__init__()
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._stopped = False
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from napari_bavis.runner import child_main; child_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # buffered: pickle needs whole reads
        )
        _LIVE.add(self)
        threading.Thread(target=self._talk, args=(ref, kwargs), name="bavis-job-reader", daemon=True).start()

    def _talk(self, ref: str, kwargs: dict) -> None:
        """Send the job, then relay every message; runs in a thread (pickling large arrays is off the GUI)."""
        proc, final = self._proc, False
        try:
            with self._lock:
                if not self._stopped:
                    pickle.dump((ref, kwargs), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                    proc.stdin.flush()
            while True:
                msg = pickle.load(proc.stdout)
                final = msg[0] != "progress"
                self._messages.put(msg)
                if final:
                    break
        except Exception as err:  # EOF: the child died or was terminated
            if not final and not self._stopped:
                code = proc.poll()
                self._messages.put(("crash", WorkerCrash("WorkerExited", f"the worker process ended (exit code {code}): {err}")))
        finally:
            self._reap()

    def cancel(self) -> None:
        """Abandon the run now: the next poll() says "cancelled". The child is told (a cancel byte,
        then its stdin closes, so it ends itself after ``grace_s``) and a thread terminates it if it
        is still there after ``grace_s``: the caller (the GUI thread) never waits for it."""
        if self.cancelled or self.finished:
            return
        self.cancelled = True
        self._stopped = True  # its end is expected: no "worker exited" message
        threading.Thread(target=self._end, args=(self.grace_s, b"c"), name="bavis-job-end", daemon=True).start()

    def stop(self, wait: bool = False) -> None:
        """End the child now (closing the widget or the viewer); no message follows. It is
        terminated at once and reaped by a thread unless ``wait`` (at interpreter exit)."""
        self._stopped = True
        self.finished = True
        if wait:
            self._end(0.0)
        else:
            threading.Thread(target=self._end, args=(0.0,), name="bavis-job-end", daemon=True).start()

    def _end(self, grace_s: float, last: bytes = b"") -> None:
        """Send ``last`` and close the child's stdin (under the lock: after the job is fully written,
        a byte inside it would corrupt it), give it ``grace_s`` to end, then terminate (and kill) it.
        With neither, terminate at once (a job still being written then fails with a broken pipe)."""
        proc = self._proc
        if last or grace_s > 0:
            with self._lock:
                try:
                    if last:
                        proc.stdin.write(last)
                        proc.stdin.flush()
                    proc.stdin.close()
                except (OSError, ValueError):
                    pass
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2.0)
        self._close_stdin()

    def _close_stdin(self) -> None:
        with self._lock:
            try:
                self._proc.stdin.close()
            except Exception:
                pass

    def _reap(self) -> None:
        """After the last message (or EOF): the child exits by itself once its stdin closes."""
        self._close_stdin()
        try:
            self._proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            self._end(0.0)

    @property
    def pid(self) -> int:
        return self._proc.pid


def start(ref: str, kwargs: dict, kind: str | None = None):
    """A running job: ``ref`` is ``"module:function"`` called as ``f(progress=, cancel=, **kwargs)``."""
    return (ProcessRun if (kind or default_kind()) == "process" else ThreadRun)(ref, kwargs)


def stop_all() -> None:
    """At interpreter exit: every child still running (or ending after a cancel) is ended and reaped."""
    for run in list(_LIVE):
        if run._proc.poll() is None:
            run.stop(wait=True)


atexit.register(stop_all)


def busy_job(progress=None, cancel=None, seconds: float = 0.0, honour_cancel: bool = True):
    """A stand-in job for tests and benchmarks: one progress step, then busy for ``seconds`` without
    a check in between unless ``honour_cancel`` (like N4 or a registration that never returns early)."""
    if progress is not None:
        progress("busy", 0, 1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if honour_cancel and cancel is not None and cancel.is_set():
            raise Cancelled("cancelled by the user")
    return os.getpid()


# --- the child side ------------------------------------------------------------------------------
def child_main() -> None:
    """Read one job from stdin, run it, write its messages; stop at a cancel byte or a closed stdin."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the libraries print goes to stderr, never into the message stream
    stdin = sys.stdin.buffer
    try:
        ref, kwargs = pickle.load(stdin)
    except Exception:  # stopped before the job was fully sent: nothing to do, nothing to say
        os._exit(3)
    try:
        os.nice(5)  # the viewer answers first on a busy machine
    except (AttributeError, OSError):
        pass
    cancel = threading.Event()
    lock = threading.Lock()

    def listen():
        try:
            while stdin.read(1) == b"c":
                cancel.set()
        except Exception:
            pass
        cancel.set()
        time.sleep(GRACE_S)
        os._exit(3)  # the viewer is gone (or the cancel was not honoured): no orphan keeps computing

    threading.Thread(target=listen, daemon=True).start()

    def send(msg) -> None:
        with lock:
            pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()

    def progress(step, done, total):
        send(("progress", str(step), int(done), int(total)))

    try:
        call = resolve(ref)
    except Exception as err:
        send(("crash", WorkerCrash(type(err).__name__, str(err))))
        _leave(out)
    status, value = _outcome(call, kwargs, progress, cancel)
    try:
        send((status, value))
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        send(("crash", WorkerCrash(type(err).__name__, f"the result could not be sent back: {err}")))
    _leave(out)


def _leave(out) -> None:
    """Exit at once: a normal shutdown would wait on the listening thread blocked reading stdin
    (CPython then aborts with "could not acquire lock for <stdin>")."""
    for stream in (out, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)
