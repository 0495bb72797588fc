"""Explanation maps (Grad-CAM, Grad-CAM++, Smooth Grad-CAM++, multi-layer SMOE) for N-D PyTorch CNNs.

Pure PyTorch: no Qt or napari. Every call is self-contained (no module-level state), removes its
hooks and restores the model's modes. See docs/explain.md.
"""

from .capture import ACTIVATION_TYPES, resolve_layer
from ..methods import ALL_METHODS as METHODS
from .engine import compute_maps, default_layers, siamese_maps
from .occlusion import baseline_input, region_importance
from .sanity import model_randomisation

__all__ = ["ACTIVATION_TYPES", "METHODS", "baseline_input", "compute_maps", "default_layers", "model_randomisation",
           "region_importance", "resolve_layer", "siamese_maps"]
