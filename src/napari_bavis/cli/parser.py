"""The command line's grammar: every subcommand, its arguments and help, in one place."""

from __future__ import annotations

import argparse
from functools import partial

from .. import __version__
from ..cohort.scans import parse_shard
from ..io import NIFTI_SUFFIXES
from ._common import _age_arg, _methods, _sex_arg, add_explain_arguments
from .analyze import cmd_analyze
from .compare import cmd_compare, cmd_demo
from .models import cmd_models, cmd_train


def build_parser() -> argparse.ArgumentParser:
    from ..pipeline import DEFAULT_METHODS, DEFAULT_MODEL
    from ..regions import DEFAULT_THRESHOLD

    parser = argparse.ArgumentParser(
        prog="napari-bavis",
        description="Explainable brain age from MRI without a display (research use only, not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"napari-bavis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    devices = ("auto", "cpu", "cuda", "mps")

    a = sub.add_parser("analyze", help="brain age and explanation maps of scans or folders of scans")
    a.add_argument("paths", nargs="+", metavar="PATH", help=f"{'/'.join(NIFTI_SUFFIXES)} files or folders (searched recursively)")
    a.add_argument("--out", required=True, metavar="DIR", help="output folder: DIR/<scan name>/ and DIR/results.csv")
    a.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|FILE",
                   help=f"bundled model name or checkpoint file (default {DEFAULT_MODEL}, trained on real adult brains)")
    a.add_argument("--age", type=_age_arg, metavar="YEARS", help="chronological age (a single scan)")
    a.add_argument("--sex", type=_sex_arg, metavar="F|M", help="sex (scans without a covariates row)")
    a.add_argument("--covariates", metavar="CSV", help="table with a file (or scan) column and age and sex columns")
    a.add_argument("--methods", type=_methods, default=tuple(DEFAULT_METHODS), metavar="LIST",
                   help=f"comma-separated map methods or 'all' (default {','.join(DEFAULT_METHODS)})")
    a.add_argument("--threshold", type=float, default=None, help="regions table: map values above V (the thesis used 0.3)")
    a.add_argument("--top-percent", type=float, default=None, metavar="K",
                   help=f"regions table: the top K %% of each map (default {DEFAULT_THRESHOLD:g})")
    add_explain_arguments(a)
    a.add_argument("--device", choices=devices, default="auto")
    a.add_argument("--workers", type=int, default=1, metavar="N", help="parallel CPU processes (one model each)")
    a.add_argument("--force", action="store_true", help="redo scans whose results are already complete")
    a.add_argument("--shard", type=parse_shard, metavar="i/n", help="process only part i of n of the sorted scan list")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_analyze)

    c = sub.add_parser("compare", help="similarity of two scans under a Siamese encoder, with one map per scan")
    c.add_argument("scan_a", metavar="A")
    c.add_argument("scan_b", metavar="B")
    c.add_argument("--out", required=True, metavar="DIR")
    c.add_argument("--model", default="demo-siamese", metavar="demo-siamese|FILE")
    c.add_argument("--methods", type=_methods, default=tuple(DEFAULT_METHODS), metavar="LIST")
    c.add_argument("--age-a", type=partial(_age_arg, flag="--age-a"), metavar="YEARS", help="chronological age of A (warns outside the model's ages)")
    c.add_argument("--age-b", type=partial(_age_arg, flag="--age-b"), metavar="YEARS", help="chronological age of B")
    c.add_argument("--threshold", type=float, default=0.3)
    c.add_argument("--device", choices=devices, default="auto")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser("demo", help="the main job on a sample scan with the bundled model, no display needed")
    d.add_argument("--out", default="bavis-demo", metavar="DIR", help="output folder (default ./bavis-demo)")
    d.add_argument("--model", default="demo", metavar="demo|FILE", help=argparse.SUPPRESS)
    d.add_argument("--device", choices=devices, default="auto")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("models", help="list bundled models, show a checkpoint's model card, or import a published model "
                                      "(models import WEIGHTS --preset NAME --out FILE)")
    m.add_argument("checkpoint", nargs="?", metavar="FILE|import", help="a checkpoint (or bundled name) to describe, or 'import'")
    m.add_argument("weights", nargs="?", metavar="WEIGHTS", help="import: the released weight file (a plain state_dict)")
    m.add_argument("--preset", metavar="NAME", help="import: which published model the weights are (e.g. sfcn-ukb)")
    m.add_argument("--out", metavar="FILE", help="import: the napari-bavis checkpoint to write")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train a demo model on phantoms (resumes), or the real-brain model on a BIDS dataset")
    t.add_argument("task", choices=("brain-age", "siamese", "real-brain-age"),
                   help="phantom demo models, or the ridge ensemble on the real T1 scans of --bids")
    t.add_argument("--bids", metavar="DIR", help="real-brain-age: the BIDS dataset to train on")
    t.add_argument("--name", default="ds002748", help="real-brain-age: the model's name (default ds002748)")
    t.add_argument("--workers", type=int, default=2, help="scans or phantoms preprocessed in parallel")
    t.add_argument("out_path", metavar="OUT", help="checkpoint file to write")
    t.add_argument("--subjects", type=int, default=200, help="phantom subjects, split by subject into train/validation/test")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--grid-mm", type=float, default=3.0, help="voxel size of the model grid over the MNI box (default 3 mm)")
    t.add_argument("--seed", type=int, default=2026)
    t.add_argument("--device", choices=devices, default="auto")
    t.add_argument("--restart", action="store_true", help="ignore a saved resume state and start over")
    t.add_argument("--through-pipeline", action="store_true",
                   help="phantoms: native-space phantoms put through the pipeline's preprocessing (how the bundled "
                        "demo models are trained; about 8 s of CPU per phantom) instead of grid phantoms")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    from .bids import add_bids_parser  # issue 16: the BIDS-App interface

    add_bids_parser(sub, devices)
    return parser
