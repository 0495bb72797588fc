"""Writing results safely on shared disks: umask-respecting temporary files, early writability
checks, one-line disk errors, per-scan claims between concurrent runs, stale ``.part`` cleanup.

Why a module of its own: ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries, so results
renamed into place from them were unreadable for the rest of a lab sharing a cohort folder; every
temporary file or folder of the package is made here and given the mode the user's umask asks for.
The checks run before any scan is analysed, so a read-only or unreachable ``--out`` costs seconds,
not a cohort's worth of work.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import BavisError

#: Hidden folder of ``--out`` holding one lock file per scan being analysed (see :func:`claim`).
CLAIMS_DIR = ".bavis-claims"
_UMASK_LOCK = threading.Lock()


class OutputError(BavisError):
    """An output location cannot be written (missing permission, read-only, full disk)."""


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc), else set and
    restored under a lock (``os.umask`` is the only portable way to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def share_like_new(path: str | os.PathLike, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have given it (0666/0777 minus the umask)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def mkstemp_shared(**kwargs) -> tuple[int, str]:
    """``tempfile.mkstemp`` whose file ends up readable as the umask allows (not 0600)."""
    fd, tmp = tempfile.mkstemp(**kwargs)
    share_like_new(tmp)
    return fd, tmp


def mkdtemp_shared(**kwargs) -> str:
    """``tempfile.mkdtemp`` whose folder ends up readable as the umask allows (not 0700)."""
    tmp = tempfile.mkdtemp(**kwargs)
    share_like_new(tmp, folder=True)
    return tmp


def os_error_text(err: OSError) -> str:
    """One line for an OSError: "no space left on device" rather than "[Errno 28] ..."."""
    reasons = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
    }
    reason = reasons.get(err.errno) or " ".join((err.strerror or str(err) or type(err).__name__).split())
    where = err.filename if isinstance(err.filename, str) else None
    return f"{where}: {reason}" if where else reason


def check_writable_dir(out: str | os.PathLike, label: str = "--out") -> Path:
    """Create ``out`` if needed and prove a file can be written in it; else OutputError, one line."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{label} {out}: is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bavis-write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = os_error_text(OSError(err.errno, err.strerror))
        raise OutputError(f"{label} {out}: cannot write there ({reason})") from None
    return out


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def _lock_file(path: Path, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if needed), or None when it is taken.

    The holder removes the file when done; a process that locked a file meanwhile removed sees that
    its inode is no longer the one at ``path`` and tries again."""
    import fcntl

    while True:
        path.parent.mkdir(exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the folder was removed between mkdir and open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _unlock_file(path: Path, fd: int, remove_folder: bool = False) -> None:
    try:
        os.unlink(path)  # while still locked: nobody can hold it after us
    except OSError:
        pass
    os.close(fd)
    if remove_folder:
        try:
            path.parent.rmdir()  # only when empty: other scans' claims keep it
        except OSError:
            pass


@contextmanager
def claim(out: str | os.PathLike, name: str):
    """Hold the claim on ``out/<name>`` for the block; yields False when a live process holds it.

    An exclusive ``flock`` on ``out/.bavis-claims/<name>.lock``: the kernel drops it when its holder
    exits (even killed), so a claim is never stale; the file and folder go when the block ends.
    Without flock (Windows) every claim succeeds.
    """
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    path = Path(out) / CLAIMS_DIR / f"{name}.lock"
    fd = _lock_file(path, blocking=False)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        _unlock_file(path, fd, remove_folder=True)


@contextmanager
def locked(path: str | os.PathLike):
    """Block until the exclusive lock beside ``path`` is held (e.g. merging results.csv)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = Path(path).with_name(f".{Path(path).name}.lock")
    fd = _lock_file(lock, blocking=True)
    try:
        yield
    finally:
        _unlock_file(lock, fd)


def clean_stale_parts(out: str | os.PathLike, name: str, before: float) -> int:
    """Remove ``out/.<name>.XXXXXXXX.part`` / ``.old`` folders older than ``before`` (a time stamp).

    Call it only while holding :func:`claim` for ``name``: the claim proves no live run is writing
    them (a killed run's leftovers). Returns how many were removed.
    """
    pattern = re.compile(rf"^\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.(part|old)$")
    removed = 0
    try:
        entries = list(Path(out).iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < before:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> str:
    """``payload`` into ``path`` through a temporary file renamed over it (a reader never sees half a
    PNG, PDF or report); returns the path. Generic output I/O: the figures, reports and tables use it."""
    from .io import atomic_target

    with atomic_target(path) as tmp:
        tmp.write_bytes(payload)
    return str(path)
