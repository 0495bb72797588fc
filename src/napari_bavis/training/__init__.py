"""Training of the brain-age and Siamese demo models on synthetic phantoms (CPU-feasible).

See docs/training.md. Torch is imported inside the functions, not at package import.
"""

from .brain_age import train_brain_age
from .data import (
    COARSE_GRID,
    DEMO_INPUT,
    TrainingError,
    cached_phantoms,
    default_cache_dir,
    load_inputs,
    model_input,
    split_by_subject,
)
from .real_brain_age import train_real_brain_age
from .siamese import train_siamese

__all__ = [
    "COARSE_GRID", "DEMO_INPUT", "TrainingError", "cached_phantoms", "default_cache_dir", "load_inputs",
    "model_input", "split_by_subject", "train_brain_age", "train_real_brain_age", "train_siamese",
]
