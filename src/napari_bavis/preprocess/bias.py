"""Step 2: N4 bias-field correction, fitted on a downsampled copy and applied at full resolution."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .geometry import from_sitk, to_sitk

#: Spacing (mm) of the copy the field is fitted on; the field is smooth, so little is lost.
N4_FIT_SPACING_MM = 5.0
N4_ITERATIONS = (50, 40, 30)


def n4_correct(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, dict]:
    """(bias-corrected array, record). The foreground mask for the fit is an Otsu threshold."""
    image = to_sitk(np.clip(data, 0, None), affine)
    spacing = np.asarray(image.GetSpacing())
    shrink = [max(1, int(round(N4_FIT_SPACING_MM / s))) for s in spacing]
    small = sitk.Shrink(image, shrink)
    mask = sitk.OtsuThreshold(small, 0, 1, 200)
    small = sitk.Add(small, 1e-3 * float(np.percentile(data[data > 0], 99)))  # N4 works on log intensities
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations(list(N4_ITERATIONS))
    n4.SetConvergenceThreshold(1e-4)
    n4.Execute(small, mask)
    log_field = n4.GetLogBiasFieldAsImage(image)
    field, _ = from_sitk(sitk.Exp(log_field))
    corrected = (np.clip(data, 0, None) / field).astype(np.float32)
    record = {
        "method": "SimpleITK N4BiasFieldCorrection",
        "fit_shrink_factors": shrink,
        "iterations_per_level": list(N4_ITERATIONS),
        "convergence_threshold": 1e-4,
        "mask": "Otsu threshold of the downsampled scan",
        "field_range": [float(field.min()), float(field.max())],
    }
    return corrected, record
