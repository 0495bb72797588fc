"""``napari-bavis compare`` (two scans, a Siamese model) and ``napari-bavis demo`` (the bundled sample)."""

from __future__ import annotations

import time
from pathlib import Path

from ..outputs import OutputError, check_writable_dir
from ..summary import report_line
from ._common import (
    EXIT_FAILED, EXIT_OK, UsageError, _err, _load_model_or_usage, _model_ref, _progress_bars_enabled, _resolve_device,
    _tqdm, failure_line,
)


def _fresh_or_own_dir(out: Path) -> None:
    """Whole-folder outputs (demo, compare) replace ``out``: only when it is new, empty or ours."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.json").is_file())):
        raise UsageError(f"--out {out}: exists and is not a napari-bavis result; choose a new folder")
    try:
        check_writable_dir(out)  # before the model loads and the scans are analysed
    except OutputError as err:
        raise UsageError(str(err)) from None


def cmd_compare(args) -> int:
    from .. import pipeline

    out = Path(args.out)
    _fresh_or_own_dir(out)
    for p in (args.scan_a, args.scan_b):
        if Path(p).resolve().is_relative_to(out.resolve()):
            raise UsageError(f"--out {out}: holds the input {p}; choose another folder")
    device = _resolve_device(args.device)
    model = _load_model_or_usage(_model_ref(args.model), device)
    if model[1].task != "siamese":
        raise UsageError(f"--model {args.model}: {model[1].name} is a {model[1].task} model; comparing needs a Siamese model")
    bar = _tqdm(total=1, desc="compare", disable=not _progress_bars_enabled(args.quiet), bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")

    def progress(step, done, total):
        bar.total, bar.n = total, done
        bar.set_postfix_str(step, refresh=True)

    t0 = time.perf_counter()
    try:
        comparison = pipeline.compare(args.scan_a, args.scan_b, model=model, methods=args.methods,
                                      device=device, progress=progress, age_a=args.age_a, age_b=args.age_b)
        report = pipeline.export_comparison(comparison, out, threshold=args.threshold)
    except Exception as err:
        bar.close()
        _err(failure_line(f"{args.scan_a} vs {args.scan_b}", err))
        return EXIT_FAILED
    bar.close()
    sim = report.get("similarity") or {}
    warnings = comparison.notes  # as analyze's per-scan line: every warning once, on the result's line
    print(f"{args.scan_a} vs {args.scan_b}: cosine similarity {sim.get('cosine', float('nan')):.3f}, "
          f"embedding distance {sim.get('distance', float('nan')):.3f}"
          + (f"; {len(warnings)} warning{'s' if len(warnings) > 1 else ''}: " + " | ".join(warnings) if warnings else ""))
    _err(f"napari-bavis: compared in {time.perf_counter() - t0:.1f} s; results in {out}")
    return EXIT_OK


def demo_sample():
    """(image, chronological age, sex, label) of the demo scan: the phantoms' old AD-like subject,
    generated once and then read from the sample cache (sample_cache.py), as the napari sample is."""
    from ..phantoms.generator import SAMPLE_KINDS
    from ..sample_cache import phantom_sample

    spec = SAMPLE_KINDS["old AD-like"]
    return phantom_sample("old AD-like"), spec["age"], spec["sex"], "old AD-like phantom"


def cmd_demo(args) -> int:
    from .. import pipeline
    from ..io import scan_from_image, write_nifti

    out = Path(args.out)
    _fresh_or_own_dir(out)
    if "demo" not in pipeline.bundled_models() and args.model == "demo":
        raise UsageError("the bundled demo model is not installed with this copy of napari-bavis "
                         "(src/napari_bavis/data/demo.pt); give a checkpoint with --model FILE")
    device = _resolve_device(args.device)
    model = _load_model_or_usage(_model_ref(args.model), device)
    t0 = time.perf_counter()
    bar = _tqdm(total=1, desc="demo", disable=not _progress_bars_enabled(args.quiet), bar_format="{desc} {bar} {n_fmt}/{total_fmt}{postfix}")

    def progress(step, done, total):
        bar.total, bar.n = total, done
        bar.set_postfix_str(step, refresh=True)

    try:
        image, age, sex, label = demo_sample()
        if model[1].sex_encoding is None:
            sex = None
        elif sex is None:
            sex = "F"  # the template has no recorded sex; the model needs one
        scan = scan_from_image(image, path=f"{label}.nii.gz")  # names the figure and report after the sample
        analysis = pipeline.analyze(scan, model=model, chronological_age=age, sex=sex,
                                    methods=pipeline.ALL_METHODS, device=device, progress=progress)
        report = pipeline.export_analysis(analysis, out)  # the default cut (regions.DEFAULT_THRESHOLD)
        write_nifti(out / "scan.nii.gz", image)
    except Exception as err:
        bar.close()
        _err(failure_line(f"demo ({label if 'label' in locals() else 'sample'})", err))
        return EXIT_FAILED
    bar.close()
    print(f"demo on the {label}: {report_line(report)}")
    print(f"maps, figure.png and report.json in {out.resolve()} (the scan itself: scan.nii.gz)")
    _err(f"napari-bavis: demo done in {time.perf_counter() - t0:.1f} s (research use only, not a medical device)")
    return EXIT_OK
