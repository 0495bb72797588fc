"""What a brain MRI file may claim, checked from its header before anything is decompressed.

Why: a 440 KB gzip of zeros whose header says 768³ voxels made the reader spend 4 GB and 28 s and
the CLI pass 10.7 GB; intensities near the float32 maximum made preprocessing run for ever; a file
without orientation codes got nibabel's guessed affine (x flipped) silently; pixdim 0 became 1 mm.
The napari reader and the CLI both open files through :func:`napari_bavis.io.load_image`, which calls
these checks, so they share one set of limits; preprocessing adds the field-of-view check
(millimetres, not voxel counts) and the intensity checks for arrays handed to it directly.

Choice for orientation-less headers (NIfTI sform_code and qform_code both 0): **refused**. Without
them left and right are unknown (the same brain's age moved by 5 y under nibabel's fallback), and
every exported map would be mirrored without anyone noticing.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import ScanError

#: Largest volume accepted: 512³ voxels (a 0.5 mm whole head at 7 T is ~480×480×360 = 83 M).
MAX_VOXELS = 512**3
#: Largest voxel payload as stored (before conversion to float32): 2 GiB.
MAX_PAYLOAD_BYTES = 2 * 1024**3
#: Plausible voxel edge lengths in millimetres (pixdim); 0, negative or NaN is refused.
VOXEL_MM = (0.01, 50.0)
#: Smallest field of view per axis that preprocessing works on, in millimetres (a brain is ~140 mm).
MIN_FOV_MM = 30.0
#: Largest field of view per axis, in millimetres: bigger is a wrong voxel size, not a head.
MAX_FOV_MM = 2000.0
#: Fewest voxels per axis preprocessing needs whatever their size (interpolation, shrink factors).
MIN_VOXELS_PER_AXIS = 8
#: Largest absolute intensity after scaling (scl_slope/scl_inter): squares and sums stay finite in
#: float32 far below this; real scanners write at most ~1e6.
MAX_ABS_INTENSITY = 1e12

_NIBABEL_LOCK = threading.Lock()


def _mega(n: float) -> str:
    return f"{n / 1e6:.0f} M" if n >= 1e6 else f"{n:.0f}"


def check_file(path: Path) -> None:
    """A regular file (a FIFO would block the reader; /dev/zero never ends): else one ScanError line."""
    try:
        info = os.stat(path)  # follows symlinks: a link to /dev/zero is a character device
    except OSError as err:
        raise ScanError(f"{path.name}: cannot be read ({err.strerror or err})") from None
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if info.st_size == 0:
            raise ScanError(f"{path.name}: the file is empty (0 bytes)")
        return
    kind = ("a folder, not a scan file" if stat.S_ISDIR(mode) else
            "a named pipe (FIFO), not a scan file" if stat.S_ISFIFO(mode) else
            "a device, not a scan file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a socket, not a scan file" if stat.S_ISSOCK(mode) else "not a regular file")
    raise ScanError(f"{path.name}: is {kind}")


def raw_header(img, path: Path):
    """The NIfTI header exactly as stored (nibabel's load silently 'fixes' pixdim 0 to 1), or None."""
    import nibabel as nib

    header = getattr(img, "header", None)
    if not isinstance(header, nib.Nifti1Header):  # also Nifti2Header
        return None
    try:
        with nib.openers.ImageOpener(str(path)) as handle:
            return type(header).from_fileobj(handle, check=False)
    except Exception:
        return None


def check_header(img, path: Path) -> None:
    """Size (voxels and bytes), voxel size and orientation from the header: nothing decompressed."""
    label = path.name
    shape = tuple(int(s) for s in img.shape)
    voxels = int(np.prod(shape, dtype=np.float64)) if shape else 0
    dims = "×".join(str(s) for s in shape)
    if voxels > MAX_VOXELS:
        raise ScanError(f"{label}: its header claims {dims} voxels ({_mega(voxels)}); at most "
                        f"{_mega(MAX_VOXELS)} (512³) are accepted: crop or downsample it first")
    try:
        itemsize = int(img.get_data_dtype().itemsize)
    except Exception:
        itemsize = 0
    payload = voxels * itemsize
    if payload > MAX_PAYLOAD_BYTES:
        raise ScanError(f"{label}: its voxels take {payload / 2**30:.1f} GiB as stored; at most "
                        f"{MAX_PAYLOAD_BYTES / 2**30:.0f} GiB are accepted")
    raw = raw_header(img, path)
    if raw is not None:
        n = min(3, len(shape))
        pixdim = np.asarray(raw["pixdim"][1:1 + n], dtype=np.float64)
        if not np.all(np.isfinite(pixdim)) or np.any(np.abs(pixdim) < VOXEL_MM[0]) or np.any(np.abs(pixdim) > VOXEL_MM[1]):
            raise ScanError(f"{label}: its voxel size (pixdim {', '.join(f'{v:g}' for v in pixdim)}) is zero, "
                            f"not finite or outside {VOXEL_MM[0]:g}–{VOXEL_MM[1]:g} mm; the header is broken")
        if int(raw["sform_code"]) == 0 and int(raw["qform_code"]) == 0:
            raise ScanError(f"{label}: its header has no orientation (sform_code and qform_code are 0), so left "
                            "and right are unknown; set the qform or sform (e.g. fslorient, nibabel) first")
        offset = int(raw.get_data_offset()) if hasattr(raw, "get_data_offset") else 0
        if str(path).lower().endswith(".nii") and path.stat().st_size < offset + payload:
            raise ScanError(f"{label}: the file is truncated ({path.stat().st_size} bytes; its header "
                            f"promises {offset + payload})")


def _who(label: str | None) -> str:
    return f"{label}: " if label else ""


def check_intensity_range(lo: float, hi: float, label: str | None = None) -> None:
    """Finite values whose magnitude the analysis can square and sum in float32."""
    peak = max(abs(lo), abs(hi))
    if peak > MAX_ABS_INTENSITY:
        raise ScanError(f"{_who(label)}intensities reach {peak:.3g} (after the header's scaling); at most "
                        f"±{MAX_ABS_INTENSITY:.0e} are supported: check scl_slope or rescale the image")


def check_field_of_view(shape, zooms, label: str | None = None) -> None:
    """Preprocessing's size check in millimetres (0.5×0.5×8 mm slices over a whole head are fine)."""
    shape = tuple(int(s) for s in shape[:3])
    fov = [s * float(z) for s, z in zip(shape, zooms)]
    text = "x".join(str(s) for s in shape)
    fov_text = "x".join(f"{f:.0f}" for f in fov)
    if min(shape) < MIN_VOXELS_PER_AXIS or min(fov) < MIN_FOV_MM:
        raise ScanError(f"{_who(label)}the volume is too small ({text} voxels, {fov_text} mm field of view); at least "
                        f"{MIN_FOV_MM:g} mm and {MIN_VOXELS_PER_AXIS} voxels per axis are needed")
    if max(fov) > MAX_FOV_MM:
        raise ScanError(f"{_who(label)}the field of view ({fov_text} mm) is larger than {MAX_FOV_MM:g} mm; "
                        "the voxel size in the header is wrong")


def check_positive_signal(data: np.ndarray, label: str | None = None) -> None:
    """A T1-weighted brain is bright: a volume with no positive voxel cannot be bias-corrected or scaled."""
    if not np.any(data > 0):
        raise ScanError(f"{_who(label)}the volume has no positive intensities (maximum {float(np.max(data)):g}); "
                        "a T1-weighted scan is needed (is it inverted or a difference image?)")


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(" ".join(record.getMessage().split()))


@contextmanager
def nibabel_messages():
    """Collect nibabel's own log lines (it prints header fixes straight to stderr) instead of
    letting them leak; yields the list of messages, which callers turn into warnings."""
    logger = logging.getLogger("nibabel.global")
    capture = _Capture()
    with _NIBABEL_LOCK:
        saved, saved_propagate = logger.handlers[:], logger.propagate
        logger.handlers[:] = [capture]
        logger.propagate = False
        try:
            yield capture.messages
        finally:
            logger.handlers[:] = saved
            logger.propagate = saved_propagate
