"""Finding a cohort's scans and naming their result folders: the same list, names and shards for the
CLI, a notebook or a scheduler (computed over the whole sorted list, so every shard agrees)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Sequence


def find_scans(paths: Sequence, exclude=None) -> list[Path]:
    """Files as given plus every file the reader opens (io.NIFTI_SUFFIXES: .nii, .nii.gz, .mgz) under
    folders (recursively), sorted, without duplicates.

    Result folders under ``exclude`` (the output folder: its sub-folders holding a report.json) and
    hidden files or folders (``.part`` folders of unfinished results) are never taken as inputs, so
    a second run over a folder that holds its own results does not analyse its maps, and ``--out``
    may be the input folder itself.
    """
    from ..io import is_scan_path

    exclude = Path(exclude).resolve() if exclude is not None else None
    found: dict[Path, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in p.rglob("*"):
                # not only regular files: a FIFO or a link to a device named *.nii fails with its own line
                if is_scan_path(f.name) and not any(part.startswith(".") for part in f.relative_to(p).parts) and not f.is_dir():
                    resolved = f.resolve()
                    if exclude is not None and _in_result_folder(resolved, exclude):
                        continue
                    found.setdefault(resolved, f)
        elif p.exists() or is_scan_path(p):
            found.setdefault(p.resolve(), p)  # a given file is analysed (or fails) whatever its suffix
        else:
            found.setdefault(p.resolve(), p)  # missing: fails with one line like any bad scan
    return [found[k] for k in sorted(found, key=str)]


def _in_result_folder(resolved: Path, out: Path) -> bool:
    """True for files inside ``out/<folder>/`` where that folder is a result (or hidden)."""
    if not resolved.is_relative_to(out):
        return False
    parts = resolved.relative_to(out).parts
    return len(parts) > 1 and (parts[0].startswith(".") or (out / parts[0] / "report.json").is_file())


def output_names(scans: Sequence[Path]) -> list[str]:
    """One folder name per scan: its scan name, or name-<hash of the path> where two scans share one.

    Computed over the whole (sorted) list before sharding, so every shard agrees.
    """
    from ..io import scan_name

    names = [scan_name(p) or "scan" for p in scans]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out = []
    for p, n in zip(scans, names):
        if counts[n] > 1:
            n = f"{n}-{hashlib.sha1(str(Path(p).resolve()).encode()).hexdigest()[:8]}"
        out.append(n)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` (1 <= i <= n) -> (i, n)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard must look like i/n (e.g. 3/10), not {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 1 <= i <= n")
    return i, n


def shard_indices(count: int, shard: tuple[int, int] | None) -> list[int]:
    """Positions in the sorted scan list that shard i of n processes (round robin: balanced, disjoint)."""
    if shard is None:
        return list(range(count))
    i, n = shard
    return list(range(i - 1, count, n))
