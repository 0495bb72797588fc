"""Brain age, its gap and Siamese similarity from a volume already in the model's space.

Bias correction (fitted on healthy validation data only; see docs/models.md):
- ``regression-on-age`` (Cole 2018; Peng 2021): fit ŷ = α·y + β; corrected age (ŷ − β)/α.
- ``offset`` (Beheshti 2019; de Lange & Cole 2020): fit δ = ŷ − y = α·y + β; corrected gap δ − (α·y + β).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import BavisError
from .bins import distribution, edge_warning, head_of
from .card import BIAS_METHODS, ModelCard


class ModelInputError(BavisError):
    """The volume, sex or age given to a model cannot be used as they are."""


# --- bias correction ---------------------------------------------------------------------------

def fit_bias_correction(predicted, age, method: str = "regression-on-age") -> dict:
    """Least-squares coefficients for the card's ``bias_correction`` field (controls only)."""
    if method not in BIAS_METHODS:
        raise ModelInputError(f"bias correction method must be one of {', '.join(BIAS_METHODS)}, not {method!r}")
    pred = np.asarray(predicted, dtype=float).ravel()
    y = np.asarray(age, dtype=float).ravel()
    if pred.shape != y.shape:
        raise ModelInputError(f"{pred.size} predictions for {y.size} ages")
    if pred.size < 2 or not np.all(np.isfinite(pred)) or not np.all(np.isfinite(y)):
        raise ModelInputError("bias correction needs at least two finite (prediction, age) pairs")
    if np.ptp(y) == 0:
        raise ModelInputError("bias correction needs more than one distinct chronological age")
    target = pred if method == "regression-on-age" else pred - y
    alpha, beta = np.polyfit(y, target, 1)
    if method == "regression-on-age" and abs(alpha) < 1e-6:
        raise ModelInputError("predictions do not vary with age (slope ~0): regression-on-age is undefined")
    return {"method": method, "alpha": float(alpha), "beta": float(beta)}


def correct_brain_age(predicted, age, coefficients: dict):
    """Bias-corrected brain age (same shape as ``predicted``)."""
    pred = np.asarray(predicted, dtype=float)
    y = np.asarray(age, dtype=float)
    a, b, method = float(coefficients["alpha"]), float(coefficients["beta"]), coefficients["method"]
    if method == "regression-on-age":
        return (pred - b) / a
    if method == "offset":
        return pred - (a * y + b)
    raise ModelInputError(f"unknown bias correction method {method!r}")


def corrected_gap(predicted, age, coefficients: dict):
    """Bias-corrected brain-age gap = corrected brain age − chronological age."""
    return correct_brain_age(predicted, age, coefficients) - np.asarray(age, dtype=float)


# --- inputs -------------------------------------------------------------------------------------

def _card(card) -> ModelCard:
    return card if isinstance(card, ModelCard) else ModelCard.from_dict(card)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _volume_tensor(volume, card: ModelCard, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
    shape = tuple(card.model_grid.shape)
    while t.ndim > 3 and t.shape[0] == 1:
        t = t[0]
    if tuple(t.shape) != shape:
        raise ModelInputError(
            f"volume shape {tuple(np.shape(volume))} does not match the model grid "
            f"{'x'.join(map(str, shape))}: bring the scan into the model space first"
        )
    t = t.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ModelInputError("volume contains NaN or infinite values")
    return t.reshape(1, 1, *shape)


def _sex_tensor(sex, card: ModelCard, device) -> torch.Tensor | None:
    """Sex is required when the card has a sex encoding: guessing it would shift the age silently."""
    enc = card.sex_encoding
    if enc is None:
        return None
    if sex is None:
        raise ModelInputError("this model needs the sex (F or M) as a second input")
    key = str(sex).strip().upper()
    key = {"FEMALE": "F", "MALE": "M", "W": "F"}.get(key, key)
    if key not in enc:
        raise ModelInputError(f"sex must be F or M, not {sex!r}")
    return torch.tensor([[float(enc[key])]], dtype=torch.float32, device=device)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


# --- brain age ----------------------------------------------------------------------------------

@dataclass
class AgePrediction:
    brain_age: float
    slab_ages: list[float] | None = None
    uncertainty: float | None = None  # SD (ddof=1) of slab or member ages; a bin head's distribution SD
    chronological_age: float | None = None
    gap: float | None = None  # brain age − chronological age, uncorrected
    brain_age_corrected: float | None = None
    gap_corrected: float | None = None
    correction_method: str | None = None
    out_of_range_warning: str | None = None
    units: str = "years"

    def to_dict(self) -> dict:
        return asdict(self)


def predict_age(model: nn.Module, card, volume, sex=None, chronological_age=None, amp: bool = False) -> AgePrediction:
    """Brain age of one model-space volume ((X, Y, Z) or (1, 1, X, Y, Z), array or tensor).

    ``sex``: "F"/"M" (required when the card has a sex encoding, ignored otherwise). ``amp``: bf16
    autocast on CUDA (ignored elsewhere). Runs in eval mode without gradients."""
    card = _card(card)
    if card.task != "brain_age":
        raise ModelInputError(f"{card.name} is a {card.task} model, not a brain-age model")
    device = _model_device(model)
    x = _volume_tensor(volume, card, device)
    s = _sex_tensor(sex, card, device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(device, amp):
            members = binned = None
            head = head_of(card)
            if head is not None and hasattr(model, "log_probs"):
                slabs = None
                brain_age, spread, p = distribution(head, model.log_probs(x).float().cpu())
                binned = (spread, edge_warning(head, brain_age, p))
            elif hasattr(model, "forward_slabs"):
                slabs = model.forward_slabs(x, s).float().reshape(-1).cpu().double()
                brain_age = float(slabs.mean())
            elif hasattr(model, "forward_members"):
                slabs = None
                members = model.forward_members(x, s).float().reshape(-1).cpu().double()
                brain_age = float(members.mean())
            else:
                slabs = None
                brain_age = float(model(x, s).float().reshape(-1)[0])
    finally:
        model.train(was_training)
    out = AgePrediction(brain_age=brain_age)
    if slabs is not None:
        out.slab_ages = [float(v) for v in slabs]
        out.uncertainty = float(slabs.std(unbiased=True)) if slabs.numel() > 1 else None
    if members is not None and members.numel() > 1:
        out.uncertainty = float(members.std(unbiased=True))  # spread of the ensemble's members
    if binned is not None:
        out.uncertainty = binned[0]  # SD of the predicted age distribution over the bins
    if chronological_age is not None:
        y = float(chronological_age)
        if not math.isfinite(y) or y <= 0:
            raise ModelInputError(f"chronological age must be a positive number of years, not {chronological_age!r}")
        out.chronological_age = y
        out.gap = brain_age - y
        if card.bias_correction:
            out.brain_age_corrected = float(correct_brain_age(brain_age, y, card.bias_correction))
            out.gap_corrected = out.brain_age_corrected - y
            out.correction_method = card.bias_correction["method"]
    out.out_of_range_warning = _out_of_range_warning(card, brain_age, out.chronological_age)
    if binned is not None and binned[1]:
        out.out_of_range_warning = "; ".join(w for w in (out.out_of_range_warning, binned[1]) if w)
    return out


def _out_of_range_warning(card: ModelCard, brain_age: float, chronological_age: float | None) -> str | None:
    """Either age outside the card's training range: the model never saw such brains, so its output
    there is an extrapolation (a predicted age outside the range says so even without a given age)."""
    if not card.training_age_range:
        return None
    lo, hi = card.training_age_range
    problems = []
    if not lo <= brain_age <= hi:
        problems.append(f"brain age {brain_age:.1f} is outside the model's training range {lo:g}-{hi:g} years: "
                        "it is extrapolated")
    if chronological_age is not None and not lo <= chronological_age <= hi:
        problems.append(f"chronological age {chronological_age:g} is outside the training range {lo:g}-{hi:g} years: "
                        "the brain age and its gap are extrapolated")
    return "; ".join(problems) or None


# --- Siamese ------------------------------------------------------------------------------------

def compare_age_warning(card, age, label: str) -> str | None:
    """A compared scan's given chronological age outside the Siamese card's training range (the
    encoder never saw such brains: its embedding, the similarity and the nearest reference are
    extrapolated); None when inside, unknown or the card has no range. A bad age is one line."""
    if age is None:
        return None
    y = float(age)
    if not math.isfinite(y) or y <= 0:
        raise ModelInputError(f"{label}: chronological age must be a positive number of years, not {age!r}")
    card = _card(card)
    if not card.training_age_range:
        return None
    lo, hi = card.training_age_range
    if lo <= y <= hi:
        return None
    return (f"{label}: chronological age {y:g} is outside the model's training range {lo:g}-{hi:g} years: "
            "its embedding and the similarity are extrapolated")


def embed(siamese: nn.Module, card, volume, amp: bool = False) -> np.ndarray:
    """L2-normalised embedding (D,) of one model-space volume."""
    card = _card(card)
    if card.task != "siamese":
        raise ModelInputError(f"{card.name} is a {card.task} model, not a Siamese encoder")
    device = _model_device(siamese)
    x = _volume_tensor(volume, card, device)
    was_training = siamese.training
    siamese.eval()
    try:
        with torch.inference_mode(), _autocast(device, amp):
            e = siamese(x).float()
    finally:
        siamese.train(was_training)
    e = torch.nn.functional.normalize(e.reshape(1, -1), dim=1)[0]
    return e.cpu().double().numpy()


@dataclass
class Similarity:
    cosine: float  # cosine similarity of the two embeddings, in [-1, 1]
    distance: float  # Euclidean distance of the unit embeddings = sqrt(2 - 2 cos), in [0, 2]
    nearest_reference_a: str | None = None
    nearest_reference_b: str | None = None
    reference_similarities_a: dict = field(default_factory=dict)  # label -> cosine
    reference_similarities_b: dict = field(default_factory=dict)
    embedding_a: list = field(default_factory=list)
    embedding_b: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def reference_similarities(embedding, references: dict | None) -> tuple[str | None, dict]:
    """Cosine similarity of ``embedding`` to each reference (re-normalised); the best label first."""
    if not references:
        return None, {}
    e = np.asarray(embedding, dtype=float)
    sims = {}
    for label, ref in references.items():
        r = np.asarray(ref, dtype=float)
        if r.shape != e.shape:
            raise ModelInputError(f"reference embedding {label!r} has {r.size} values, the model gives {e.size}")
        sims[label] = float(e @ r / (np.linalg.norm(e) * np.linalg.norm(r) + 1e-12))
    return max(sims, key=sims.get), sims


def compare(siamese: nn.Module, card, a, b, amp: bool = False) -> Similarity:
    """Similarity of two model-space volumes, and which reference (e.g. healthy / AD-like) each is nearest."""
    card = _card(card)
    ea, eb = embed(siamese, card, a, amp), embed(siamese, card, b, amp)
    cos = float(np.clip(ea @ eb, -1.0, 1.0))
    na, sa = reference_similarities(ea, card.reference_embeddings)
    nb, sb = reference_similarities(eb, card.reference_embeddings)
    return Similarity(
        cosine=cos, distance=float(math.sqrt(max(0.0, 2.0 - 2.0 * cos))),
        nearest_reference_a=na, nearest_reference_b=nb,
        reference_similarities_a=sa, reference_similarities_b=sb,
        embedding_a=ea.tolist(), embedding_b=eb.tolist(),
    )
