"""Step 4: affine registration of the scan to nilearn's MNI152 2009 T1 template (SimpleITK).

Fixed image: the 2 mm template; moving image: the scan, block-averaged to about 2 mm.
A rigid search from a few rotation starts (centre-of-mass initialisation, Mattes mutual
information at 8 mm) picks the basin, then a 12-parameter affine is refined over three
levels (8, 4, 2 mm). The result is a 4x4 RAS matrix mapping template mm to scan mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ..errors import PreprocessError
from .geometry import ras_to_sitk_transform, sitk_transform_to_ras, to_sitk
from .templates import template

#: QC compares the registered scan with the template after smoothing both to this FWHM: an affine
#: fit aligns the brain's outline, ventricles and tissue layout, not each person's gyri, so the
#: unsmoothed correlation measures folding (0.46-0.64 on real adults, 0.95-0.99 on phantoms)
#: more than registration. docs/preprocess.md has the distributions these cut-offs come from.
QC_SMOOTHING_FWHM_MM = 8.0
#: Refused below either cut-off (Pearson r with the template inside its brain mask, 2 mm grid).
#: Measured: 60 real adult scans (ds002748) raw 0.35-0.61, smoothed 0.62-0.84; non-brains (noise,
#: sphere, cube, cylinder, leg-like volume, an upside-down or 90-degree-rotated head) raw <= 0.24,
#: smoothed <= 0.56.
MIN_REGISTRATION_CORRELATION = 0.30
MIN_REGISTRATION_CORRELATION_SMOOTHED = 0.58
MOVING_SPACING_MM = 2.0
#: Rotation starts (degrees about x, y, z) tried by the rigid search besides the identity.
ROTATION_STARTS = tuple(
    [(0.0, 0.0, 0.0)]
    + [tuple(a if i == axis else 0.0 for i in range(3)) for axis in range(3) for a in (-30.0, 30.0)]
)
MI_BINS = 32
SEED = 20251


@dataclass
class Registration:
    template_to_scan: np.ndarray  # 4x4 RAS mm: template (MNI) point -> scan world point
    correlation: float  # Pearson r of the registered scan vs the template inside the template brain mask
    metric: float  # final Mattes MI (negative: lower is better)
    record: dict = field(default_factory=dict)
    correlation_smoothed: float = float("nan")  # the same after smoothing both to QC_SMOOTHING_FWHM_MM


def _method(shrink, smooth, iterations, sampling, fixed_mask=None) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=MI_BINS)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentagePerLevel(list(sampling), SEED)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(smooth))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _moving_image(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    image = to_sitk(data, affine)
    factors = [max(1, int(round(MOVING_SPACING_MM / s))) for s in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _euler_start(base: sitk.Euler3DTransform, angles_deg) -> sitk.Euler3DTransform:
    tx = sitk.Euler3DTransform(base)
    rx, ry, rz = np.radians(angles_deg)
    tx.SetRotation(rx, ry, rz)
    return tx


def correlation_in_mask(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def register_to_template(data: np.ndarray, affine: np.ndarray, initial: np.ndarray | None = None) -> Registration:
    """Affine template->scan transform; PreprocessError when the fit is doubtful.

    ``initial`` (4x4 RAS template->scan) skips the rigid search and only refines, e.g.
    a second pass on the brain-extracted scan.
    """
    t1, t1_affine = template("t1", 2)
    mask, _ = template("mask", 2)
    fixed = to_sitk(t1, t1_affine)
    moving = _moving_image(data, affine)

    # Fixed mask: the template brain, dilated so the brain's outline still drives the fit.
    fixed_mask = sitk.Cast(sitk.BinaryDilate(to_sitk((mask > 0.5).astype(np.float32), t1_affine) > 0.5, [3] * 3), sitk.sitkUInt8)

    starts = []
    if initial is None:
        centred = sitk.CenteredTransformInitializer(
            fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
        )
        centred = sitk.Euler3DTransform(centred)
        # Rigid search at 8 mm on pre-smoothed copies: each start costs a fraction of a second.
        fixed_coarse = sitk.Shrink(sitk.SmoothingRecursiveGaussian(fixed, 4.0), [4] * 3)
        moving_coarse = sitk.Shrink(sitk.SmoothingRecursiveGaussian(moving, 4.0), [2] * 3)
        best = None
        for angles in ROTATION_STARTS:
            reg = _method((1,), (0.0,), 30, (0.5,))
            reg.SetInitialTransform(_euler_start(centred, angles), inPlace=True)
            tx = reg.Execute(fixed_coarse, moving_coarse)
            value = reg.GetMetricValue()
            starts.append({"rotation_deg": list(angles), "mattes_mi": float(value)})
            if best is None or value < best[0]:
                best = (value, tx)
        rigid = sitk.Euler3DTransform(best[1])
        init = sitk.AffineTransform(3)
        init.SetCenter(rigid.GetCenter())
        init.SetMatrix(rigid.GetMatrix())
        init.SetTranslation(rigid.GetTranslation())
        levels = ((4, 2, 1), (4.0, 2.0, 0.0), (0.5, 0.25, 0.1))
    else:
        init = ras_to_sitk_transform(initial)
        levels = ((2, 1), (2.0, 0.0), (0.25, 0.1))

    reg = _method(levels[0], levels[1], 100, levels[2], fixed_mask)
    reg.SetInitialTransform(init, inPlace=True)
    final = reg.Execute(fixed, moving)
    matrix = sitk_transform_to_ras(final)
    metric = float(reg.GetMetricValue())

    # QC on the 2 mm template grid, from the binned moving image the fit itself used (cheap).
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, final, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    warped = np.ascontiguousarray(warped.transpose(2, 1, 0))
    brain = mask > 0.5
    corr = correlation_in_mask(warped, t1, brain)
    corr_smooth = correlation_in_mask(_smoothed(warped), _smoothed(t1), brain)
    record = {
        "method": "SimpleITK ImageRegistrationMethod, affine",
        "fixed": "nilearn MNI152 2009 T1 template, 2 mm",
        "moving_spacing_mm": MOVING_SPACING_MM,
        "metric": f"Mattes mutual information, {MI_BINS} bins, regular sampling",
        "initialisation": "centre of mass (MOMENTS) + rigid search over rotation starts" if initial is None else "previous pass",
        "rotation_starts": starts,
        "shrink_factors": list(levels[0]),
        "smoothing_sigmas_mm": list(levels[1]),
        "optimizer": "regular step gradient descent, physical-shift scales",
        "iterations": int(reg.GetOptimizerIteration()),
        "final_metric": metric,
        "template_to_scan_ras": matrix.tolist(),
        "correlation_with_template": corr,
        "correlation_with_template_smoothed": corr_smooth,
        "qc_smoothing_fwhm_mm": QC_SMOOTHING_FWHM_MM,
    }
    if not (corr >= MIN_REGISTRATION_CORRELATION and corr_smooth >= MIN_REGISTRATION_CORRELATION_SMOOTHED):
        raise PreprocessError(
            f"Registration to the MNI template is doubtful: correlation with the template inside its brain mask "
            f"is {corr:.2f} ({corr_smooth:.2f} smoothed to {QC_SMOOTHING_FWHM_MM:.0f} mm; needs >= "
            f"{MIN_REGISTRATION_CORRELATION} and >= {MIN_REGISTRATION_CORRELATION_SMOOTHED}); "
            f"is this a T1-weighted brain scan?"
        )
    return Registration(template_to_scan=matrix, correlation=corr, metric=metric, record=record,
                        correlation_smoothed=corr_smooth)


def _smoothed(values: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    from .resample import FWHM_TO_SIGMA

    sigma_voxels = QC_SMOOTHING_FWHM_MM * FWHM_TO_SIGMA / 2.0  # on the 2 mm grid
    return gaussian_filter(values.astype(np.float32), sigma_voxels)
