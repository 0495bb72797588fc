"""Scanner scan -> model input on an MNI grid, and model-grid maps -> back onto the scan.

>>> spec = PreprocessSpec.from_card(card)
>>> result = preprocess(nib.load("t1.nii.gz"), spec)
>>> result.model_input, result.to_native(saliency_on_grid)
"""

from .run import Preprocessed, preprocess
from .spec import PreprocessSpec

__all__ = ["PreprocessSpec", "Preprocessed", "preprocess"]
