"""Published models by name: one table entry per model, and ``import_weights`` that turns the
released weight file into a napari-bavis checkpoint with a full card.

Why: a released state_dict holds only tensors. How its input was made (template, storage order,
crop, normalisation), what its output means (bins) and where it came from (paper, licence,
population) live in a paper; a wrong guess gives a silently wrong age. A preset writes all of that
into the card once, so ``analyze --model imported.pt`` needs nothing else. Adding a published model
is one more :data:`PRESETS` entry.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BavisError, CheckpointError


@dataclass(frozen=True)
class Preset:
    name: str
    architecture: str
    summary: str
    released_file: str  # the file's name as its authors distribute it
    card: dict = field(default_factory=dict)  # card fields over ``default_card(architecture)``


def _sfcn_input_fields() -> dict:
    """SFCN's input and output exactly as Peng et al. 2021 describe them (also the default sfcn card)."""
    from ..preprocess.input_space import fsl_mni152_centre_crop
    from .bins import BinHead

    space = fsl_mni152_centre_crop((160, 192, 160), statistics="template_grid")
    return {
        "input_kind": "t1",
        "grid": space.model_grid.to_dict(),
        "input_space": space.to_dict(),
        # UK Biobank's T1_brain_to_MNI: brain-extracted, bias-field corrected (FAST there, N4 here), 12-DoF linear
        # (FLIRT there, our affine registration here) to MNI152 1 mm; then divided by the mean of the whole
        # 182x218x182 array (zeros outside the brain included) and centre-cropped.
        "preprocessing": {
            "bias_correction": True, "brain_extraction": True, "registration": "affine", "segmentation": False,
            "modulation": False, "smoothing_fwhm_mm": 0.0, "intensity_normalisation": "mean",
        },
        "sex_encoding": None,
        "output": {"meaning": "brain age", "units": "years", "head": BinHead(42.0, 1.0, 40).to_dict()},
        "training_age_range": [42.0, 82.0],
    }


PAPER_SFCN = ("Peng H, Gong W, Beckmann CF, Vedaldi A, Smith SM. Accurate brain age prediction with lightweight deep "
              "neural networks. Medical Image Analysis 68:101871 (2021), doi:10.1016/j.media.2020.101871")

PRESETS: dict[str, Preset] = {
    "sfcn-ukb": Preset(
        name="sfcn-ukb",
        architecture="sfcn",
        summary="SFCN (Peng et al. 2021) trained on UK Biobank; test MAE 2.14 y",
        released_file="run_20190719_00_epoch_best_mae.p",
        card={
            "name": "sfcn-ukb",
            "version": "2019-07-19",
            "architecture_kwargs": {},
            "training_data": ("UK Biobank brain MRI, 14,503-subject release: 12,949 training subjects; T1 "
                              "T1_brain_to_MNI images of the UK Biobank pipeline"),
            "licence": ("MIT (repository ha-ha-ha-han/UKBiobank_deep_pretrain, weights and code); the training data "
                        "are under UK Biobank's access terms"),
            "intended_use": "research use only; adults of the age range of the bins (42-82 y)",
            "source": {
                "paper": PAPER_SFCN,
                "url": "https://github.com/ha-ha-ha-han/UKBiobank_deep_pretrain",
                "released_file": "brain_age/run_20190719_00_epoch_best_mae.p",
                "population": ("UK Biobank imaging participants (middle-aged and older adults of the UK, mostly "
                               "white British, healthier than the general population); ages inside the 42-82 y bins"),
                "age_range_years": [42.0, 82.0],
                "reported_mae_years": {"test": 2.14, "validation": 2.18, "train": 1.36},
            },
        },
    ),
}


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise CheckpointError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}") from None


def presets_line() -> str:
    return ", ".join(f"{p.name} ({p.summary})" for p in PRESETS.values())


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def preset_card(name: str, source_path=None, architecture_kwargs: dict | None = None):
    """The full card of preset ``name``; with ``source_path``, its provenance names that file and its sha256."""
    from .card import default_card

    preset = get_preset(name)
    fields = copy.deepcopy(preset.card)
    if architecture_kwargs is not None:
        fields["architecture_kwargs"] = copy.deepcopy(architecture_kwargs)
    card = default_card(preset.architecture, **fields)
    card.source = {**(card.source or {}), "preset": preset.name}
    if source_path is not None:
        path = Path(source_path)
        card.source.update(file=path.name, sha256=file_sha256(path))
        card.provenance = (f"imported from {path.name} (sha256 {card.source['sha256']}) with preset {preset.name}: "
                           f"{preset.summary}; {card.source.get('paper', '')}")
    return card


def is_plain_state_dict(path) -> bool:
    """True for a file of bare tensors (no card): it needs a preset before it can be analysed.
    False for our checkpoints, TorchScript and anything unreadable (loading reports those)."""
    from .checkpoint import FORMAT, _is_torchscript, _read, _unwrap_state_dict

    path = Path(path)
    try:
        if not path.is_file() or _is_torchscript(path):
            return False
        obj = _read(path)
    except (BavisError, OSError):
        return False
    return not (isinstance(obj, dict) and obj.get("format") == FORMAT) and _unwrap_state_dict(obj) is not None


def imported_path(weights, preset: str) -> Path:
    """Where the widget writes an imported checkpoint: beside the weights, ``<stem>.<preset>.pt``."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}.{preset}.pt")


def import_weights(weights, preset: str, out, architecture_kwargs: dict | None = None):
    """Read a released plain state_dict (DataParallel ``module.`` prefixes allowed), check that it fits
    the preset's architecture key by key, and write ``out`` as a napari-bavis checkpoint with the
    preset's full card. Returns the card. ``architecture_kwargs`` overrides the preset's (tests only)."""
    from .checkpoint import FORMAT, _read, _strip_prefixes, _unwrap_state_dict, load_state_dict_into, save_checkpoint
    from .registry import build

    p = get_preset(preset)
    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise CheckpointError(f"no weights file at {weights}")
    if out.resolve() == weights.resolve():
        raise CheckpointError(f"{out}: the output would replace the weights it is made from; choose another --out")
    obj = _read(weights)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise CheckpointError(f"{weights.name} is already a napari-bavis checkpoint: use it as it is")
    state = _unwrap_state_dict(obj)
    if state is None:
        raise CheckpointError(f"{weights.name}: not a plain state_dict of tensors (the {p.name} release is one)")
    card = preset_card(p.name, weights, architecture_kwargs)
    model = build(p.architecture, **card.architecture_kwargs)
    load_state_dict_into(model, _strip_prefixes(state), f"preset {p.name!r} ({p.architecture})")
    return save_checkpoint(out, model.eval(), card)
