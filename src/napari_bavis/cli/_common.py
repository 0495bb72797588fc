"""What every subcommand shares: exit codes, one-line errors, progress bars, model and device
arguments, the explanation options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..errors import BavisError, UsageError  # noqa: F401  (UsageError: importable from the CLI as before)
from ..cohort.covariates import _parse_age, _parse_sex
from ..summary import failure_line, one_line as _one_line  # noqa: F401

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _progress_bars_enabled(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def _tqdm(**kwargs):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


def _methods(text: str) -> tuple[str, ...]:
    from ..pipeline import ALL_METHODS

    methods = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    if text.strip().lower() == "all":
        return ALL_METHODS
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)} (or all)")
    return methods


def _resolve_device(name: str) -> str:
    from ..models import pick_device

    try:
        return str(pick_device(name))
    except BavisError as err:
        raise UsageError(str(err)) from None


def _load_model_or_usage(model_ref, device: str):
    from .. import pipeline

    try:
        return pipeline.load_model(model_ref, device)
    except BavisError as err:
        raise UsageError(f"--model {model_ref}: {_one_line(err)}") from None


def _check_out_dir(out: Path, scans: Sequence[Path], names: Sequence[str]) -> None:
    """Refuse ``--out`` only where writing would touch an input file."""
    resolved = {p.resolve() for p in scans}
    targets = [out / "results.csv"] + [out / n for n in names]
    for target in targets:
        t = target.resolve()
        for scan in resolved:
            if scan == t or scan.is_relative_to(t):
                raise UsageError(f"--out {out}: writing {target} would replace the input {scan}; choose another folder")


def _model_ref(text: str):
    from ..pipeline import BUNDLED

    return text if text in BUNDLED else Path(text)


def add_explain_arguments(parser) -> None:
    """Issue 12's switches: the atlas, region importance, faithfulness, the randomisation check."""
    from ..atlases import ATLASES, DEFAULT_ATLAS

    parser.add_argument("--atlas", choices=(*ATLASES, "none"), default=DEFAULT_ATLAS,
                        help=f"atlas that names the regions (default {DEFAULT_ATLAS}; none: no atlas)")
    parser.add_argument("--region-importance", action=argparse.BooleanOptionalAction, default=None,
                        help="brain age with each atlas region occluded (default: on when it takes under 10 s)")
    parser.add_argument("--faithfulness", action=argparse.BooleanOptionalAction, default=None,
                        help="deletion/insertion curves of every map (default: on when they take under 10 s)")
    parser.add_argument("--sanity-check", action="store_true",
                        help="model-randomisation test of the maps (Adebayo et al. 2018) into report.json")


def explain_options(args) -> dict:
    return {"atlas": None if args.atlas == "none" else args.atlas, "region_importance": args.region_importance,
            "faithfulness": args.faithfulness, "sanity_check": args.sanity_check}


def _sex_arg(text: str) -> str:
    """``--sex``'s value; errors without the flag, which argparse puts in front ("argument --sex: ...")."""
    try:
        value = _parse_sex(text, "--sex")
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--sex: ")) from None
    if value is None:
        raise argparse.ArgumentTypeError("expected F or M")
    return value


def _age_arg(text: str, flag: str = "--age") -> float:
    """An age option's value (``flag``: bind it with functools.partial). Errors leave the flag out:
    argparse names the option typed in front ("argument --age-b: age 'x' is not a number")."""
    try:
        value = _parse_age(text, flag)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"{flag}: ")) from None
    if value is None:
        raise argparse.ArgumentTypeError("expected a number of years")
    return value
