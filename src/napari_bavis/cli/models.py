"""``napari-bavis models`` (list, inspect, import published weights) and ``napari-bavis train``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import BavisError
from ._common import EXIT_FAILED, EXIT_OK, UsageError, _err, _one_line, failure_line


def _grid_text(card) -> str:
    try:
        g = card.model_grid
        return f"{'x'.join(map(str, g.shape))} @ {'x'.join(f'{v:g}' for v in g.voxel_size)} mm"
    except Exception:
        return "?"


def cmd_models_import(args) -> int:
    """``models import WEIGHTS --preset NAME --out FILE``: a published model's released weights -> our checkpoint."""
    from ..models.presets import import_weights, presets_line

    if not args.weights or not args.preset or not args.out:
        raise UsageError(f"models import needs WEIGHTS --preset NAME --out FILE (presets: {presets_line()})")
    try:
        card = import_weights(Path(args.weights), args.preset, Path(args.out))
    except BavisError as err:
        _err(failure_line(args.weights, err))
        return EXIT_FAILED
    print(f"wrote {args.out}: {card.name} {card.version} ({card.architecture}), source sha256 {card.source['sha256']}")
    return EXIT_OK


def cmd_models(args) -> int:
    from .. import pipeline

    if args.checkpoint == "import":
        return cmd_models_import(args)
    if args.weights or args.preset or args.out:
        raise UsageError("--preset and --out belong to 'napari-bavis models import WEIGHTS --preset NAME --out FILE'")
    if args.checkpoint:
        from ..models import load_checkpoint

        ref = args.checkpoint
        try:
            if ref in pipeline.BUNDLED:
                _, card = pipeline.load_model(ref, "cpu")
            else:
                _, card = load_checkpoint(Path(ref), device="cpu")
        except BavisError as err:
            _err(failure_line(ref, err))
            return EXIT_FAILED
        for key in ("name", "version", "training_data", "provenance", "licence", "intended_use"):
            if isinstance(getattr(card, key, None), str):  # a newline inside a name would forge a line
                setattr(card, key, _one_line(getattr(card, key)))
        print("\n".join(_one_line(line) for line in card.summary().splitlines()))
        return EXIT_OK
    bundled = pipeline.bundled_models()
    if not bundled:
        print("no bundled models are installed with this copy of napari-bavis")
        return EXIT_OK
    header = ("name", "architecture", "task", "grid", "training ages", "intended use")
    lines = [header]
    for name, path in bundled.items():
        try:
            _, card = pipeline.load_model(name, "cpu")
        except BavisError as err:
            lines.append((name, "?", "?", "?", "?", f"unreadable: {_one_line(err)}"))
            continue
        ages = "-".join(f"{a:g}" for a in card.training_age_range) + " y" if card.training_age_range else "unknown"
        lines.append((name, card.architecture, card.task, _grid_text(card), ages, card.intended_use))
    widths = [max(len(_one_line(row[i])) for row in lines) for i in range(len(header))]
    for row in lines:
        print("  ".join(_one_line(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return EXIT_OK


def cmd_train(args) -> int:
    from .. import training

    train = training.train_brain_age if args.task == "brain-age" else training.train_siamese
    command = "napari-bavis train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    try:
        if args.task == "real-brain-age":
            if not args.bids:
                raise UsageError("train real-brain-age needs --bids DIR (a BIDS dataset with participants.tsv)")
            from ..training.real_brain_age import format_table
            from ..training.real_data import dataset_info

            card, table = training.train_real_brain_age(
                Path(args.out_path), args.bids, name=args.name, seed=args.seed, workers=args.workers,
                dataset=dataset_info(args.bids), progress=not args.quiet, command=command)
            print(format_table(table))
        else:
            card = train(Path(args.out_path), n_subjects=args.subjects, epochs=args.epochs, grid=args.grid_mm,
                         seed=args.seed, device=args.device, resume=not args.restart, progress=not args.quiet,
                         command=command, through_pipeline=args.through_pipeline, workers=args.workers)
    except BavisError as err:
        _err(failure_line(args.out_path, err))
        return EXIT_FAILED
    print(f"{args.task}: wrote {args.out_path} ({card.name} {card.version}, {card.architecture})")
    return EXIT_OK
