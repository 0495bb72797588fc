"""The model card: everything needed to use a set of weights correctly and honestly, stored as
JSON inside every checkpoint (schema: docs/models.md and the shared contract)."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import CheckpointError
from ..grid import Grid

TASKS = ("brain_age", "siamese")
INPUT_KINDS = ("t1", "gm")
NORMALISATIONS = ("none", "mean", "zscore", "robust_minmax")
BIAS_METHODS = ("regression-on-age", "offset")

DEFAULT_PREPROCESSING = {
    "bias_correction": True,
    "brain_extraction": True,
    "registration": "affine",
    "segmentation": True,
    "modulation": False,
    "smoothing_fwhm_mm": 4.0,
    "intensity_normalisation": "none",
}


def _bad(field_name: str, problem: str) -> CheckpointError:
    return CheckpointError(f"model card: {field_name} {problem}")


@dataclass
class ModelCard:
    name: str
    architecture: str
    task: str = "brain_age"
    version: str = "0.0.0"
    architecture_kwargs: dict = field(default_factory=dict)
    input_kind: str = "gm"
    grid: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))
    sex_encoding: dict | None = field(default_factory=lambda: {"F": 0.0, "M": 1.0})
    output: dict = field(default_factory=lambda: {"meaning": "brain age", "units": "years"})
    training_age_range: list | None = None
    bias_correction: dict | None = None
    reference_embeddings: dict | None = None
    training_data: str = "unknown"
    provenance: str = "unknown"
    licence: str = "unknown"
    intended_use: str = "research use only"
    checksum: str | None = None
    #: a published model's exact input (template grid, storage order, crop, statistics):
    #: ``preprocess.input_space.InputSpace.to_dict()``; null for this project's own models
    input_space: dict | None = None
    #: where imported weights came from: file, sha256, preset, paper, url, population (models/presets.py)
    source: dict | None = None
    #: keys this version does not know, kept so a card survives a round trip unchanged
    extra: dict = field(default_factory=dict)

    # --- conversion -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "extra"}
        d.update(copy.deepcopy(self.extra))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        if not isinstance(d, dict):
            raise CheckpointError(f"model card: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        for key in ("name", "architecture"):
            if key not in d:
                raise _bad(key, "is missing")
        kwargs = {k: copy.deepcopy(v) for k, v in d.items() if k in known}
        kwargs["extra"] = {k: copy.deepcopy(v) for k, v in d.items() if k not in known}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @property
    def model_grid(self) -> Grid:
        return Grid.from_dict(self.grid)

    # --- checks -------------------------------------------------------------------------------
    def validate(self) -> "ModelCard":
        """Raise a one-line CheckpointError naming the first field that is wrong; return self."""
        from .registry import available

        if not isinstance(self.name, str) or not self.name:
            raise _bad("name", "must be a non-empty string")
        if self.architecture not in available():
            raise _bad("architecture", f"{self.architecture!r} is not built in ({', '.join(available())})")
        if not isinstance(self.architecture_kwargs, dict):
            raise _bad("architecture_kwargs", "must be an object")
        if self.task not in TASKS:
            raise _bad("task", f"must be one of {', '.join(TASKS)}, not {self.task!r}")
        if self.input_kind not in INPUT_KINDS:
            raise _bad("input_kind", f"must be one of {', '.join(INPUT_KINDS)}, not {self.input_kind!r}")
        try:
            g = self.model_grid
            ok = len(g.shape) == 3 and all(s > 0 for s in g.shape) and g.affine.shape == (4, 4)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _bad("grid", "must be {'shape': [3 positive ints], 'affine': 4x4 list}")
        if not isinstance(self.preprocessing, dict):
            raise _bad("preprocessing", "must be an object")
        norm = self.preprocessing.get("intensity_normalisation", "none")
        if norm not in NORMALISATIONS:
            raise _bad("preprocessing.intensity_normalisation", f"must be one of {', '.join(NORMALISATIONS)}")
        fwhm = self.preprocessing.get("smoothing_fwhm_mm", 0.0)
        if not isinstance(fwhm, (int, float)) or fwhm < 0:
            raise _bad("preprocessing.smoothing_fwhm_mm", "must be a number >= 0")
        if self.sex_encoding is not None:
            if (not isinstance(self.sex_encoding, dict) or set(self.sex_encoding) != {"F", "M"}
                    or not all(isinstance(v, (int, float)) for v in self.sex_encoding.values())):
                raise _bad("sex_encoding", "must be null or {'F': number, 'M': number}")
        if self.training_age_range is not None:
            r = self.training_age_range
            if (not isinstance(r, (list, tuple)) or len(r) != 2
                    or not all(isinstance(v, (int, float)) for v in r) or not r[0] < r[1]):
                raise _bad("training_age_range", "must be null or [low, high] with low < high")
        bc = self.bias_correction
        if bc is not None:
            if not isinstance(bc, dict) or bc.get("method") not in BIAS_METHODS:
                raise _bad("bias_correction", f"method must be one of {', '.join(BIAS_METHODS)}")
            for k in ("alpha", "beta"):
                if not isinstance(bc.get(k), (int, float)) or not math.isfinite(bc[k]):
                    raise _bad(f"bias_correction.{k}", "must be a finite number")
            if bc["method"] == "regression-on-age" and abs(bc["alpha"]) < 1e-6:
                raise _bad("bias_correction.alpha", "is ~0: regression-on-age would divide by zero")
        if self.reference_embeddings is not None:
            refs = self.reference_embeddings
            if not isinstance(refs, dict) or not refs:
                raise _bad("reference_embeddings", "must be null or {label: [numbers]}")
            lengths = {len(v) if isinstance(v, (list, tuple)) else -1 for v in refs.values()}
            if len(lengths) != 1 or -1 in lengths or 0 in lengths:
                raise _bad("reference_embeddings", "must all be non-empty lists of the same length")
        if self.input_space is not None:
            from ..preprocess.input_space import InputSpace, check_card_grid

            check_card_grid(InputSpace.from_dict(self.input_space), self.model_grid)
        from .bins import check_head

        check_head(self)
        if self.source is not None and not isinstance(self.source, dict):
            raise _bad("source", "must be null or an object")
        if self.task == "siamese" and self.sex_encoding is not None:
            raise _bad("sex_encoding", "must be null for a Siamese encoder (it takes no sex)")
        from .card_checks import check_card_values

        check_card_values(self)  # every field's type and range (ages, smoothing, grid size...)
        try:
            json.dumps(self.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"model card: not plain JSON ({err})") from None
        return self

    # --- reports --------------------------------------------------------------------------------
    def summary(self) -> str:
        """Plain-text lines for a report or a tooltip."""
        g = self.model_grid if self.grid else None
        lines = [f"{self.name} {self.version} ({self.architecture}, {self.task.replace('_', ' ')})"]
        if g is not None:
            vs = "x".join(f"{v:g}" for v in g.voxel_size)
            lines.append(f"input: {self.input_kind.upper()} on {'x'.join(map(str, g.shape))} voxels at {vs} mm")
        p = self.preprocessing or {}
        lines.append(
            "preprocessing: " + ", ".join(f"{k.replace('_', ' ')}={v}" for k, v in p.items())
        )
        if self.task == "brain_age":
            lines.append(f"output: {self.output.get('meaning', '?')} in {self.output.get('units', '?')}")
            if self.sex_encoding:
                lines.append(f"sex input: F={self.sex_encoding['F']:g}, M={self.sex_encoding['M']:g}")
            if self.training_age_range:
                lo, hi = self.training_age_range
                lines.append(f"training ages: {lo:g}-{hi:g} years")
            if self.bias_correction:
                bc = self.bias_correction
                lines.append(f"bias correction: {bc['method']} (alpha={bc['alpha']:.4g}, beta={bc['beta']:.4g})")
            else:
                lines.append("bias correction: none (gaps are uncorrected)")
        elif self.reference_embeddings:
            lines.append("reference embeddings: " + ", ".join(self.reference_embeddings))
        if self.input_space:
            sp = self.input_space
            lines.append(f"input space: {sp.get('template')}; storage {sp.get('storage')}, crop "
                         f"{'x'.join(map(str, sp.get('crop', {}).get('shape', [])))} at {sp.get('crop', {}).get('start')}, "
                         f"normalisation statistics over the {str(sp.get('normalisation_statistics')).replace('_', ' ')}")
        head = (self.output or {}).get("head")
        if head:
            lines.append(f"output head: {head.get('count')} bins of {head.get('width')} y from {head.get('start')} y, "
                         "age = sum(p * centre), uncertainty = SD of p")
        if self.source:
            src = self.source
            lines.append(f"source: {src.get('file', '?')} (sha256 {str(src.get('sha256', '?'))[:16]}…), preset "
                         f"{src.get('preset', '?')}; {src.get('paper', '')}")
            if src.get("population"):
                lines.append(f"population: {src['population']}")
        lines += [
            f"training data: {self.training_data}",
            f"provenance: {self.provenance}",
            f"licence: {self.licence}",
            f"intended use: {self.intended_use}",
        ]
        if self.checksum:
            lines.append(f"weights sha256: {self.checksum[:16]}…")
        return "\n".join(lines)


def default_card(architecture: str, name: str | None = None, **overrides: Any) -> ModelCard:
    """A card for a built-in architecture with honest defaults ("unknown" provenance, no bias
    correction, no training age range); override any field by keyword."""
    from .registry import info

    arch = info(architecture)
    card = ModelCard(
        name=name or architecture,
        architecture=architecture,
        task=arch.task,
        input_kind=arch.input_kind,
        grid=arch.grid.to_dict(),
    )
    if arch.task == "siamese":
        card.sex_encoding = None
        card.output = {"meaning": "L2-normalised embedding", "units": "none"}
    if architecture == "sfcn":
        from .presets import _sfcn_input_fields

        for key, value in _sfcn_input_fields().items():  # the published input space and bin head
            setattr(card, key, value)
        card.licence = "MIT (architecture, Peng et al. 2021); weights: as distributed by their authors"
    if architecture == "ba3d" and overrides.get("architecture_kwargs", {}).get("use_sex") is False:
        card.sex_encoding = None
    for key, value in overrides.items():
        if not hasattr(card, key) or key == "extra":
            raise CheckpointError(f"model card: unknown field {key!r}")
        setattr(card, key, copy.deepcopy(value))
    return card
