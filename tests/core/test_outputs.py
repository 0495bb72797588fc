"""outputs.py: umask-respecting temporary files, one-line OS errors, claims."""

import errno
import os
import stat

import pytest

from napari_bavis import outputs


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_temporary_files_and_folders_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert outputs.current_umask() == umask
        fd, path = outputs.mkstemp_shared(dir=tmp_path)
        os.close(fd)
        folder = outputs.mkdtemp_shared(dir=tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~umask


def test_os_errors_in_words():
    assert outputs.os_error_text(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"
    assert outputs.os_error_text(OSError(errno.EROFS, "x", "/data/out")) == "/data/out: read-only file system"
    assert outputs.is_disk_full(OSError(errno.ENOSPC, "x")) and not outputs.is_disk_full(ValueError())


def test_a_claim_is_exclusive_and_leaves_nothing_behind(tmp_path):
    with outputs.claim(tmp_path, "sub-01") as first:
        with outputs.claim(tmp_path, "sub-01") as second, outputs.claim(tmp_path, "sub-02") as other:
            assert first and not second and other
    assert list(tmp_path.iterdir()) == []
    with outputs.locked(tmp_path / "results.csv"):
        pass
    assert list(tmp_path.iterdir()) == []
