"""Validation and fidelity of the bundled demo models on held-out phantoms (prints tables).

    OMP_NUM_THREADS=2 python benchmarks/bench_fidelity.py            # everything, ~10 min on 2 CPU cores
    python benchmarks/bench_fidelity.py --n-maps 20 --no-native      # skip the native-space check
    python benchmarks/bench_fidelity.py --inputs grid                # maps on grid phantoms (no registration)

1. Brain age on held-out phantoms (new individuals: other cohort seeds than training): MAE on
   healthy subjects aged 20-90, and the mean brain-age gap per CDR on subjects aged 55-90.
2. Explanation maps of the BA model (gradcam, gradcam++, smooth-gradcam++, smoe, smoe*gradcam++)
   scored against the phantoms' ground-truth masks inside the brain: pointing game (the map's
   maximum falls in the mask grown by one voxel), energy-based pointing game (share of the map's
   sum inside the mask) and ROC AUC (map values, mask voxels vs the rest of the brain); chance is
   the (grown) mask's share of the brain. ``--inputs auto`` (the default): each model is scored on
   inputs of the kind it was trained on (its card's ``training_data``). ``--inputs pipeline``: the
   held-out phantoms are made as the bundled demo is trained and as a user's scan is analysed (native space through
   ``preprocess``: N4, affine registration, resampling; cached), scored against the phantom's masks on
   the model grid (so registration error counts against the map); ``--inputs grid``: the model-grid
   phantoms finished by ``model_input`` (exact masks, but not what the model was trained on).
   Then the CAM methods at every stage activation of the trunk (which layer to hook).
3. MPRT: the demo model's layers re-initialised cumulatively from the output down; Spearman rank
   correlation of each method's map with the trained model's map per depth.
4. Siamese: ROC AUC of cosine similarity for healthy-healthy vs healthy-AD-like pairs; share of each
   branch's map energy in the hippocampus / ventricle masks.
5. End to end: native-space phantoms through napari_bavis.pipeline.analyze (real preprocessing)
   vs the model on the phantom's model-space input.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from scipy.stats import rankdata, spearmanr

from napari_bavis import models
from napari_bavis.explain import compute_maps, siamese_maps
from napari_bavis.phantoms import make_subject, plan_cohort
from napari_bavis.pipeline import load_model
from napari_bavis.training.data import INPUTS_NOTE, input_spec_from_card, load_inputs, model_input
from napari_bavis.training.siamese import pair_auc

METHODS = ("gradcam", "gradcam++", "smooth-gradcam++", "smoe", "smoe*gradcam++")
SIAMESE_METHODS = ("gradcam", "gradcam++", "smoe", "smoe*gradcam++")
THESIS_GAPS = {0.0: -1.61, 0.5: 1.22, 1.0: 3.81, 2.0: 8.84}
HELD_OUT_SEED, HEALTHY_SEED = 7001, 7002


def auc(values: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count half)."""
    pos = positive.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(values)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def scores(saliency: np.ndarray, mask: np.ndarray, brain: np.ndarray) -> dict:
    grown = binary_dilation(mask) & brain
    values = np.clip(saliency[brain], 0, None)
    inside = mask[brain]
    peak = np.argmax(np.where(brain, saliency, -np.inf))
    return {
        "pointing": float(grown.ravel()[peak]) if values.max() > 0 else 0.0,  # an empty map points nowhere
        "energy": float(values[inside].sum() / max(values.sum(), 1e-12)),
        "auc": auc(values, inside),
        "chance_pointing": float(grown.sum() / brain.sum()),
        "chance_energy": float(inside.mean()),
    }


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(v).ljust(w) for v, w in zip(r, widths)) + " |")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def ages_of(model, card, xs: np.ndarray) -> np.ndarray:
    return np.array([models.predict_age(model, card, x).brain_age for x in xs])


def brain_age_tables(model, card, args) -> None:
    spec = input_spec_from_card(card)
    grid = card.model_grid
    inputs = inputs_for(card, args.inputs)
    pipe = inputs == "pipeline"
    print(f"\nBrain-age inputs: {INPUTS[inputs]}")
    if args.n_healthy:
        healthy = plan_cohort(args.n_healthy, HEALTHY_SEED, cdr_weights={0.0: 1.0})
        xs, _ = load_inputs(healthy, grid, spec, workers=args.workers, through_pipeline=pipe)
        age = np.array([lab["age"] for lab in healthy])
        pred = ages_of(model, card, xs)
        corr = models.correct_brain_age(pred, age, card.bias_correction)
        table(f"Brain age, held-out healthy phantoms aged 20-90 (n={len(age)}, cohort seed {HEALTHY_SEED})",
              ["measure", "uncorrected", "bias-corrected"],
              [["MAE (y)", float(np.mean(np.abs(pred - age))), float(np.mean(np.abs(corr - age)))],
               ["mean gap (y)", float(np.mean(pred - age)), float(np.mean(corr - age))],
               ["r(age, brain age)", float(np.corrcoef(age, pred)[0, 1]), float(np.corrcoef(age, corr)[0, 1])]])

    plan = plan_cohort(args.n_cdr, HELD_OUT_SEED, ages=(55, 90), cdr_weights={0: 1, 0.5: 1, 1: 1, 2: 1})
    xs, _ = load_inputs(plan, grid, spec, workers=args.workers, through_pipeline=pipe)
    age = np.array([lab["age"] for lab in plan])
    cdr = np.array([lab["cdr"] for lab in plan])
    pred = ages_of(model, card, xs)
    gap = pred - age
    gap_c = models.corrected_gap(pred, age, card.bias_correction)
    rows = []
    for c in (0.0, 0.5, 1.0, 2.0):
        sel = cdr == c
        rows.append([f"CDR {c:g}", int(sel.sum()), float(gap[sel].mean()), float(gap_c[sel].mean()),
                     float(gap_c[sel].std(ddof=1)) if sel.sum() > 1 else float("nan"), THESIS_GAPS[c]])
    table(f"Mean brain-age gap by CDR, held-out phantoms aged 55-90 (n={len(age)}, cohort seed {HELD_OUT_SEED})",
          ["CDR", "n", "gap (y)", "corrected gap (y)", "SD corrected", "thesis OASIS-3 (y)"], rows)
    monotone = all(rows[i][3] < rows[i + 1][3] for i in range(3))
    print(f"corrected gap rises monotonically with CDR: {monotone}")


def held_out_with_masks(card, n: int, workers: int, inputs: str = "pipeline"):
    plan = plan_cohort(n, HELD_OUT_SEED, ages=(55, 90), cdr_weights={0: 1, 0.5: 1, 1: 1, 2: 1})
    xs, records = load_inputs(plan, card.model_grid, input_spec_from_card(card), workers=workers, keep_masks=True,
                              through_pipeline=inputs == "pipeline")
    return xs, records


def maps_in_chunks(model, xs: np.ndarray, methods, chunk: int = 4, layer=None) -> dict[str, np.ndarray]:
    out: dict[str, list] = {m: [] for m in methods}
    for i in range(0, len(xs), chunk):
        x = torch.as_tensor(xs[i:i + chunk])[:, None]
        maps = compute_maps(model, x, methods=methods, layer=layer, smooth_n=8, smooth_chunk=8)
        for m in methods:
            out[m].append(maps[m].reshape(len(x), *xs.shape[1:]))
    return {m: np.concatenate(v) for m, v in out.items()}


def fidelity_tables(model, card, xs, records, inputs: str = "pipeline") -> dict[str, np.ndarray]:
    t0 = time.perf_counter()
    maps = maps_in_chunks(model, xs, METHODS)
    seconds = time.perf_counter() - t0
    print(f"\nGrad-CAM layer: {model.gradcam_layer}; inputs: {INPUTS[inputs]}")
    for mask_name in ("age", "disease", "ventricles"):
        rows, chance = [], None
        for m in METHODS:
            s = [scores(maps[m][i], r.masks[mask_name], r.masks["brain"]) for i, r in enumerate(records)]
            rows.append([m, *(float(np.nanmean([d[k] for d in s])) for k in ("pointing", "energy", "auc"))])
            chance = (float(np.mean([d["chance_pointing"] for d in s])), float(np.mean([d["chance_energy"] for d in s])))
        rows.append(["chance", chance[0], chance[1], 0.5])
        table(f"BA model maps vs the '{mask_name}' mask, inside the brain (n={len(records)} held-out phantoms, "
              f"maps in {seconds:.0f} s)", ["method", "pointing game", "energy in mask", "ROC AUC"], rows)
    return maps


INPUTS = {"pipeline": "native phantoms through the pipeline's preprocessing",
          "grid": "model-grid phantoms (model_input)"}


def inputs_for(card, choice: str) -> str:
    """``choice``, or with "auto" the kind of inputs the model was trained on (its card says)."""
    if choice != "auto":
        return choice
    return "pipeline" if INPUTS_NOTE[True].strip("; ") in (card.training_data or "") else "grid"
CAM_METHODS = ("gradcam", "gradcam++", "smoe*gradcam++")


def layer_table(model, xs, records) -> None:
    """The CAM methods hooked at each stage activation: pointing game and energy / chance on the
    ventricles and the disease mask (the regions that carry the phantoms' strongest age signal)."""
    modules = dict(model.named_modules())
    layers = [name for name in getattr(model, "smoe_layers", ()) if name in modules]
    if model.gradcam_layer not in layers:
        layers.append(model.gradcam_layer)
    rows = []
    for layer in layers:
        maps = maps_in_chunks(model, xs, CAM_METHODS, layer=layer)
        size = "x".join(str(int(v)) for v in _activation_shape(model, modules[layer], xs[:1]))
        for m in CAM_METHODS:
            row = [layer + (" (model's)" if layer == model.gradcam_layer else ""), size, m]
            for mask_name in ("ventricles", "disease"):
                s = [scores(maps[m][i], r.masks[mask_name], r.masks["brain"]) for i, r in enumerate(records)]
                energy = float(np.mean([d["energy"] for d in s]))
                row += [float(np.mean([d["pointing"] for d in s])), energy / float(np.mean([d["chance_energy"] for d in s]))]
            rows.append(row)
    table(f"CAM layer: pointing game and energy in mask / chance (n={len(records)} held-out phantoms)",
          ["layer", "cells", "method", "pointing, ventricles", "energy / chance, ventricles",
           "pointing, disease", "energy / chance, disease"], rows)


def _activation_shape(model, module, x) -> tuple:
    shape = []
    handle = module.register_forward_hook(lambda _m, _i, out: shape.extend(out.shape[2:]))
    try:
        with torch.no_grad():
            model(torch.as_tensor(x)[:, None])
    finally:
        handle.remove()
    return tuple(shape)


def _layers_top_down(model) -> list[tuple[str, torch.nn.Module]]:
    """Parametrised leaf modules, output first (the order a cascading MPRT randomises them in)."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and hasattr(m, "reset_parameters")
              and any(p.numel() for p in m.parameters(recurse=False))]
    return leaves[::-1]


def mprt_table(model, xs, records, maps, n: int) -> None:
    leaves = _layers_top_down(model)
    # depth = blocks of the trunk; BN layers travel with their conv
    stages: list[tuple[str, list[str]]] = []
    for name, _ in leaves:
        key = name.split(".")[0] if not name.startswith("trunk.") else ".".join(name.split(".")[:2])
        if not stages or stages[-1][0] != key:
            stages.append((key, []))
        stages[-1][1].append(name)
    torch.manual_seed(0)
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    rows = []
    brains = [r.masks["brain"] for r in records[:n]]
    for key, names in stages:
        for name in names:
            modules[name].reset_parameters()
        rmaps = maps_in_chunks(randomised, xs[:n], METHODS)
        row = [f"+ {key}"]
        for m in METHODS:
            rho = [spearmanr(maps[m][i][b], rmaps[m][i][b]).statistic for i, b in enumerate(brains)]
            row.append(float(np.nanmean(rho)))
        rows.append(row)
    table(f"MPRT (cascading, output -> input) on the demo model: Spearman with the trained map inside the brain "
          f"(n={n})", ["randomised down to", *METHODS], rows)


def siamese_tables(args) -> None:
    encoder, card = load_model(args.siamese)
    spec, grid = input_spec_from_card(card), card.model_grid
    plan = plan_cohort(args.n_siamese, HELD_OUT_SEED, ages=(55, 90), cdr_weights={0: 1, 0.5: 1, 1: 1, 2: 1})
    lo, hi = card.training_age_range or (55, 90)
    plan = [lab for lab in plan if lab["cdr"] != 0.5 and lo <= lab["age"] <= hi]
    inputs = inputs_for(card, args.inputs)
    xs, records = load_inputs(plan, grid, spec, workers=args.workers, keep_masks=True,
                              through_pipeline=inputs == "pipeline")
    print(f"\nSiamese inputs: {INPUTS[inputs]}")
    labels = np.array([0 if lab["cdr"] == 0 else 1 for lab in plan])
    emb = np.stack([models.embed(encoder, card, x) for x in xs])
    refs = np.array([card.reference_embeddings[k] for k in ("healthy", "AD-like")])
    nearest = np.argmax(emb @ refs.T, axis=1)
    table(f"Siamese: similarity separates healthy from AD-like (held-out, aged {lo:g}-{hi:g}: "
          f"{int((labels == 0).sum())} healthy, {int((labels == 1).sum())} AD-like CDR 1-2)", ["measure", "value", "chance"],
          [["ROC AUC, cosine of healthy-healthy vs healthy-AD pairs", pair_auc(emb, labels), 0.5],
           ["nearest reference embedding = true class", float(np.mean(nearest == labels)),
            float(max(labels.mean(), 1 - labels.mean()))]])

    healthy = [i for i in range(len(plan)) if labels[i] == 0]
    ad = [i for i in range(len(plan)) if labels[i] == 1]
    pairs = list(zip(healthy, ad))[: args.n_pairs]
    sums: dict = {}
    for i, j in pairs:
        a = torch.as_tensor(xs[i])[None, None]
        b = torch.as_tensor(xs[j])[None, None]
        maps_a, maps_b, _ = siamese_maps(encoder, a, b, methods=SIAMESE_METHODS)
        for branch, maps, rec in (("healthy", maps_a, records[i]), ("AD-like", maps_b, records[j])):
            brain = rec.masks["brain"]
            for m in SIAMESE_METHODS:
                v = np.clip(np.asarray(maps[m]).reshape(brain.shape), 0, None)
                total = max(v[brain].sum(), 1e-12)
                for region in ("hippocampus", "ventricles", "disease"):
                    sums.setdefault((m, branch, region), []).append(v[rec.masks[region]].sum() / total)
                    sums.setdefault(("chance", branch, region), []).append(rec.masks[region].sum() / brain.sum())
    rows = []
    for m in (*SIAMESE_METHODS, "chance"):
        for branch in ("healthy", "AD-like"):
            rows.append([m, branch, *(float(np.mean(sums[(m, branch, r)])) for r in ("hippocampus", "ventricles", "disease"))])
    table(f"Siamese per-branch maps: share of map energy in the masks ({len(pairs)} healthy-AD pairs; "
          "chance = mask share of the brain)", ["method", "branch", "hippocampus", "ventricles", "hipp. + vent."], rows)


def native_table(model, card) -> None:
    from napari_bavis.pipeline import analyze

    rows = []
    for seed, age, sex, cdr, label in ((1101, 25.0, "F", 0.0, "young healthy"), (2202, 75.0, "M", 0.0, "old healthy"),
                                       (2202, 75.0, "M", 2.0, "old AD-like"), (3303, 50.0, "F", 0.0, "middle healthy")):
        s = make_subject(seed, age, sex, cdr, grid=card.model_grid, native=True)
        direct = models.predict_age(model, card, model_input(s.t1_model, card.model_grid, **input_spec_from_card(card)),
                                    chronological_age=age).brain_age
        t0 = time.perf_counter()
        result = analyze(s.t1_native, model=(model, card), chronological_age=age, sex=sex, methods=())
        rows.append([label, age, cdr, float(direct), float(result.prediction.brain_age),
                     float(result.prediction.brain_age - direct), time.perf_counter() - t0])
    table("End to end: native-space phantom -> pipeline.analyze (real preprocessing) vs model-space input",
          ["phantom", "age", "CDR", "BA model space", "BA via analyze", "difference", "seconds"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo")
    p.add_argument("--siamese", default="demo-siamese")
    p.add_argument("--n-healthy", type=int, default=40, help="held-out healthy phantoms aged 20-90 (0: skip the table)")
    p.add_argument("--n-cdr", type=int, default=160, help="held-out phantoms aged 55-90, CDR 0/0.5/1/2 equally likely")
    p.add_argument("--n-maps", type=int, default=24, help="held-out phantoms whose maps are scored")
    p.add_argument("--n-mprt", type=int, default=4)
    p.add_argument("--n-pairs", type=int, default=10)
    p.add_argument("--n-siamese", type=int, default=160,
                   help="held-out phantoms aged 55-90 of which those in the Siamese's age range, CDR 0/1/2, are kept")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-native", action="store_true")
    p.add_argument("--inputs", choices=("auto", *INPUTS), default="auto",
                   help="held-out phantoms for the maps, MPRT and Siamese: through the pipeline or on the grid "
                        "(default: what each model was trained on)")
    p.add_argument("--no-layers", action="store_true", help="skip the table of CAM layers")
    args = p.parse_args()
    t0 = time.perf_counter()
    model, card = load_model(args.model)
    print(card.summary())
    brain_age_tables(model, card, args)
    inputs = inputs_for(card, args.inputs)
    xs, records = held_out_with_masks(card, args.n_maps, args.workers, inputs)
    maps = fidelity_tables(model, card, xs, records, inputs)
    if not args.no_layers:
        layer_table(model, xs, records)
    mprt_table(model, xs, records, maps, args.n_mprt)
    siamese_tables(args)
    if not args.no_native:
        native_table(model, card)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
