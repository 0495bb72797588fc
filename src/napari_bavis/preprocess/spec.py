"""What preprocessing a model needs, read from its card ("input_kind", "grid", "preprocessing")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import CheckpointError, PreprocessError
from ..grid import MNI_1P5, Grid

INPUT_KINDS = ("t1", "gm")
NORMALISATIONS = ("none", "mean", "zscore", "robust_minmax")
REGISTRATIONS = ("affine", "none")
BRAIN_EXTRACTIONS = ("auto", "deepbet", "template")


@dataclass(frozen=True)
class PreprocessSpec:
    """Every step of ``preprocess`` and its parameters; each step can be switched off.

    ``brain_extraction``: True means "auto" (a scan detected as skull-stripped keeps its own
    foreground, a head with skull goes through deepbet, the registered template mask is only a
    fallback that warns); "deepbet" and "template" force one; False switches it off.
    ``registration="none"`` declares the scan to be in MNI space already.
    """

    input_kind: str = "t1"
    grid: Grid = field(default=MNI_1P5)
    bias_correction: bool = True
    brain_extraction: bool | str = True
    registration: str = "affine"
    segmentation: bool = True
    modulation: bool = False
    smoothing_fwhm_mm: float = 4.0
    intensity_normalisation: str = "none"
    #: a published model's exact input (template grid, storage order, crop, statistics): an
    #: ``input_space.InputSpace`` whose crop is ``grid``; None for this project's own models
    input_space: object | None = None

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS:
            raise PreprocessError(f"Unknown input_kind {self.input_kind!r}; expected one of {', '.join(INPUT_KINDS)}.")
        if self.intensity_normalisation not in NORMALISATIONS:
            raise PreprocessError(
                f"Unknown intensity_normalisation {self.intensity_normalisation!r}; expected one of {', '.join(NORMALISATIONS)}."
            )
        if self.registration not in REGISTRATIONS:
            raise PreprocessError(f"Unknown registration {self.registration!r}; expected one of {', '.join(REGISTRATIONS)}.")
        if not isinstance(self.brain_extraction, bool) and self.brain_extraction not in BRAIN_EXTRACTIONS:
            raise PreprocessError(
                f"Unknown brain_extraction {self.brain_extraction!r}; expected true/false or one of {', '.join(BRAIN_EXTRACTIONS)}."
            )
        if self.input_kind == "gm" and not self.segmentation:
            raise PreprocessError("A gray-matter model (input_kind 'gm') needs segmentation switched on.")
        if self.modulation and not self.segmentation:
            raise PreprocessError("Modulation applies to the gray-matter map: it needs segmentation switched on.")
        if not (self.smoothing_fwhm_mm >= 0):
            raise PreprocessError(f"smoothing_fwhm_mm must be >= 0, got {self.smoothing_fwhm_mm}.")
        if not isinstance(self.grid, Grid):
            raise PreprocessError("grid must be a napari_bavis.grid.Grid.")
        if self.input_space is not None and self.input_space.model_grid != self.grid:
            raise PreprocessError("The input space's crop of its template grid is not the model grid.")

    @property
    def brain_extraction_backend(self) -> str | None:
        """"deepbet", "template", "auto" or None (off)."""
        if self.brain_extraction is False:
            return None
        return "auto" if self.brain_extraction is True else self.brain_extraction

    @classmethod
    def from_card(cls, card: dict) -> "PreprocessSpec":
        """Spec from a model card dict; missing preprocessing keys take the defaults above."""
        try:
            pre = dict(card.get("preprocessing") or {})
            grid = Grid.from_dict(card["grid"]) if card.get("grid") else MNI_1P5
            known = {f for f in cls.__dataclass_fields__} - {"input_kind", "grid", "input_space"}
            unknown = sorted(set(pre) - known)
            if unknown:
                raise PreprocessError(f"The model card asks for unknown preprocessing options: {', '.join(unknown)}.")
            if "smoothing_fwhm_mm" in pre:
                pre["smoothing_fwhm_mm"] = float(pre["smoothing_fwhm_mm"] or 0.0)
            space = None
            if card.get("input_space"):
                from .input_space import InputSpace

                space = InputSpace.from_dict(card["input_space"])
            return cls(input_kind=card.get("input_kind", "t1"), grid=grid, input_space=space, **pre)
        except (PreprocessError, CheckpointError):
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise PreprocessError(f"The model card's preprocessing section is malformed: {err}.") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"] = self.grid.to_dict()
        d["input_space"] = self.input_space.to_dict() if self.input_space is not None else None
        return d
