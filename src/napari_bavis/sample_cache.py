"""Generated sample scans kept on disk between sessions (File › Open Sample › napari-bavis).

Why: a phantom sample takes 10-30 s to generate (anatomy, deformation, resampling; 27 s on a busy
machine) and the synthetic scanner-pose scan about 4 s. They are deterministic, so the first open
writes the result to the user cache folder and every later open reads it back (well under a second).

The file name is a digest of the sample's name, its generator's parameters, the package version and
the source of the generating modules: a changed generator never serves a stale scan. A file is written
to a temporary name in the same folder and renamed into place, so two processes generating at once
never leave (or read) a half-written file. The cache is best effort: a read-only or full folder only
costs the generation time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

#: Modules whose code decides what a sample looks like (their source is part of the key).
GENERATOR_MODULES = ("napari_bavis.samples", "napari_bavis.phantoms")


def sample_cache_dir() -> Path:
    """``$NAPARI_BAVIS_SAMPLE_CACHE``, else ``<user cache>/napari-bavis/samples``."""
    env = os.environ.get("NAPARI_BAVIS_SAMPLE_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-bavis")) / "samples"


def _source_digest() -> str:
    """Digest of the generating modules' source files (a package: all its .py files)."""
    import importlib.util

    digest = hashlib.sha256()
    for name in GENERATOR_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        files = sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            try:
                digest.update(path.name.encode() + path.read_bytes())
            except OSError:
                pass
    return digest.hexdigest()


def cache_key(name: str, params: dict) -> str:
    from . import __version__

    blob = json.dumps({"name": name, "params": params, "version": __version__, "source": _source_digest()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cache_path(name: str, params: dict) -> Path:
    safe = "".join(c if c.isalnum() else "-" for c in name).strip("-") or "sample"
    return sample_cache_dir() / f"{safe}-{cache_key(name, params)}.npz"


def _read(path: Path) -> nib.Nifti1Image | None:
    try:
        with np.load(path) as z:  # read into memory: the file may be replaced later
            data, affine = z["data"].astype(np.float32), z["affine"].astype(float)
            header = nib.Nifti1Header(binaryblock=z["header"].tobytes())
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return nib.Nifti1Image(data, affine, header)


def _write(path: Path, image: nib.Nifti1Image) -> None:
    """The voxels, the exact float64 affine (a NIfTI header would round it to float32) and the header."""
    from .outputs import mkstemp_shared

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = mkstemp_shared(dir=path.parent, prefix=".", suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, data=np.asarray(image.dataobj, np.float32), affine=np.asarray(image.affine, float),
                         header=np.frombuffer(image.header.binaryblock, np.uint8))
            os.replace(tmp, path)  # atomic: a reader sees the old file, no file, or the whole new one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


def cached_image(name: str, params: dict, generate: Callable[[], nib.Nifti1Image]) -> nib.Nifti1Image:
    """The image ``generate()`` makes for ``name`` with ``params``: from the cache when it is there."""
    path = cache_path(name, params)
    image = _read(path) if path.is_file() else None
    if image is not None:
        return image
    image = generate()
    _write(path, image)
    return image


def phantom_sample(kind: str) -> nib.Nifti1Image:
    """The phantoms' sample subject ``kind`` ("young healthy", "old healthy", "old AD-like"), cached.

    A hit does not import the phantom generator (about 2 s of scipy imports on a busy machine): its
    parameters (``SAMPLE_KINDS``: seed, age, sex, CDR) live in its source, which is part of the key.
    An unknown kind is never in the cache and gets the generator's readable PhantomError.
    """

    def generate():
        from .phantoms import sample_subject

        return sample_subject(kind)

    return cached_image(f"phantom {kind}", {"kind": kind}, generate)


def synthetic_native_sample() -> nib.Nifti1Image:
    """The template in a scanner pose (``samples.synthetic_native_scan``), cached."""
    from . import samples

    return cached_image("synthetic native", samples.SYNTHETIC_POSE, samples.synthetic_native_scan)
