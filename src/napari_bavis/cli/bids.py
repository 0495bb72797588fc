"""``napari-bavis bids BIDS_DIR OUTPUT_DIR participant|group``: the BIDS-App interface (docs/cli.md).

A thin layer over :mod:`napari_bavis.cohort` (the engine, usable from Python); registered in
``cli.parser`` by :func:`add_bids_parser`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cohort.scans import parse_shard, shard_indices
from ._common import EXIT_FAILED, EXIT_OK, UsageError, _err, _methods, add_explain_arguments, explain_options
from ..errors import BavisError


def add_bids_parser(sub, devices) -> None:
    from ..pipeline import DEFAULT_METHODS, DEFAULT_MODEL

    b = sub.add_parser("bids", help="BIDS-App: participant level (derivatives per T1w) or group level (table, gaps, mean maps)")
    b.add_argument("bids_dir", metavar="BIDS_DIR")
    b.add_argument("output_dir", metavar="OUTPUT_DIR", help="the BIDS derivatives folder (e.g. BIDS_DIR/derivatives/napari-bavis)")
    b.add_argument("analysis_level", choices=("participant", "group"))
    b.add_argument("--participant-label", nargs="+", metavar="LABEL", help="only these subjects (01 or sub-01)")
    b.add_argument("--session-label", nargs="+", metavar="LABEL", help="only these sessions (01 or ses-01)")
    b.add_argument("--work-dir", metavar="DIR", help="intermediate results (default OUTPUT_DIR/.bavis-work)")
    b.add_argument("--nprocs", type=int, default=1, metavar="N", help="scans in parallel processes on this machine")
    b.add_argument("--omp-nthreads", type=int, default=None, metavar="N", help="threads per scan (torch, OpenMP, ITK)")
    b.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|FILE")
    b.add_argument("--methods", type=_methods, default=tuple(DEFAULT_METHODS), metavar="LIST")
    add_explain_arguments(b)
    b.add_argument("--device", choices=devices, default="cpu")
    b.add_argument("--force", action="store_true", help="redo finished scans")
    b.add_argument("--shard", type=parse_shard, metavar="i/n", help="participant: only part i of n of the sorted scans")
    b.add_argument("--dask", metavar="local:N", help="participant: run the scans on a Dask LocalCluster of N workers")
    b.add_argument("--dask-scheduler", metavar="ADDRESS", help="participant: run the scans on this Dask scheduler")
    b.add_argument("--group-column", default="group", metavar="COL", help="group: participants.tsv column of the groups")
    b.add_argument("--fit-correction-on", metavar="VALUE",
                   help="group: fit the bias correction on scans whose --correction-column is VALUE ('all': every scan; "
                        "default: control/controls/hc when present, else all)")
    b.add_argument("--correction-column", metavar="COL", help="group: the column of --fit-correction-on (default --group-column)")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_bids)


def cmd_bids(args) -> int:
    bids_dir, out = Path(args.bids_dir), Path(args.output_dir)
    if out.resolve() == bids_dir.resolve():
        raise UsageError("OUTPUT_DIR must not be BIDS_DIR itself (use e.g. BIDS_DIR/derivatives/napari-bavis)")
    if args.analysis_level == "group":
        return _group(args, bids_dir, out)
    return _participant(args, bids_dir, out)


def _participant(args, bids_dir: Path, out: Path) -> int:
    from ..cohort.backends import parse_dask, run_participants
    from ..cohort.bids import ParticipantOptions, find_bids_scans, write_dataset_description
    from ..outputs import OutputError, check_writable_dir
    from ..pipeline import BUNDLED
    from ..summary import report_line

    t0 = time.perf_counter()
    if args.nprocs < 1 or (args.omp_nthreads is not None and args.omp_nthreads < 1):
        raise UsageError("--nprocs and --omp-nthreads must be at least 1")
    try:
        scans = find_bids_scans(bids_dir, args.participant_label, args.session_label)
        local = parse_dask(args.dask) if args.dask else None
        check_writable_dir(out, "OUTPUT_DIR")
        write_dataset_description(out, bids_dir)
    except (BavisError, OutputError) as err:
        raise UsageError(str(err)) from None
    if not scans:
        raise UsageError(f"no sub-*/[ses-*/]anat/*_T1w.nii[.gz] in {bids_dir} (with the labels given)")
    if args.model not in BUNDLED and not Path(args.model).is_file():
        raise UsageError(f"--model {args.model}: not a bundled model ({', '.join(BUNDLED)}) nor a file")
    selected = [scans[i] for i in shard_indices(len(scans), args.shard)]
    options = ParticipantOptions(str(bids_dir), str(out), model=args.model, device=args.device, methods=args.methods,
                                 explain=explain_options(args), force=args.force, work_dir=args.work_dir,
                                 omp_nthreads=args.omp_nthreads)

    def shown(outcome) -> None:
        if outcome.status == "failed":
            _err(f"{outcome.path}: {outcome.error}")
        elif outcome.status == "done" and outcome.report:
            print(f"{outcome.prefix}: {report_line(outcome.report)}", flush=True)

    try:
        outcomes = run_participants(selected, options, nprocs=args.nprocs, dask_local=local,
                                    dask_scheduler=args.dask_scheduler, on_outcome=shown)
    except BavisError as err:  # e.g. an unreachable Dask scheduler: before any scan ran
        raise UsageError(str(err)) from None
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "failed", "skipped", "busy")}
    busy = f", {counts['busy']} left to another run" if counts["busy"] else ""
    _err(f"napari-bavis: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped{busy} "
         f"in {time.perf_counter() - t0:.1f} s; derivatives: {out}")
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _group(args, bids_dir: Path, out: Path) -> int:
    from ..cohort.group import run_group, stats_lines

    try:
        result = run_group(bids_dir, out, column=args.group_column.lower(), fit_on=args.fit_correction_on,
                           fit_column=args.correction_column.lower() if args.correction_column else None)
    except BavisError as err:
        _err(f"napari-bavis: {err}")
        return EXIT_FAILED
    fit = result["fit"]
    print(f"bias correction fitted on {fit['column']} = {fit['value']} (n={fit['n']}): "
          f"brain age = {fit['slope']:.3f} * age {fit['intercept']:+.2f}")
    if fit["n"] < 10:
        print(f"note: a line through {fit['n']} scans is a weak correction (the fitting group's corrected gaps are "
              "near 0 by construction); fit on tens of controls for a cohort")
    for line in stats_lines(result["stats"], args.group_column.lower()):
        print(line)
    print(f"group table: {out / 'group' / 'brainage.tsv'}; summary: {out / 'group' / 'summary.pdf'}", file=sys.stdout)
    return EXIT_OK
