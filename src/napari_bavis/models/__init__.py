"""Brain-age and Siamese networks, checkpoints that carry their model card, inference on any device.

Pure core: no Qt, no napari. See docs/models.md.
"""

from .card import ModelCard, default_card
from .checkpoint import TorchScriptModel, load_checkpoint, save_checkpoint, state_dict_checksum
from .device import DeviceError, pick_device
from .inference import (
    AgePrediction,
    ModelInputError,
    Similarity,
    compare,
    correct_brain_age,
    corrected_gap,
    embed,
    fit_bias_correction,
    predict_age,
)
from .presets import PRESETS, import_weights, preset_card, preset_names
from .registry import available, build, info

__all__ = [
    "AgePrediction", "DeviceError", "ModelCard", "ModelInputError", "PRESETS", "Similarity", "TorchScriptModel",
    "available", "build", "compare", "correct_brain_age", "corrected_gap", "default_card", "embed",
    "fit_bias_correction", "import_weights", "info", "load_checkpoint", "preset_card", "preset_names", "pick_device", "predict_age", "save_checkpoint",
    "state_dict_checksum",
]
