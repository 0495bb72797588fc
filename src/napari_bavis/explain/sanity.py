"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps").

Why: a map that explains the model must change when the model's learned weights are destroyed. The
layers of a copy of the model are re-initialised cumulatively from the output down to the input,
and each method's map is compared with the trained model's map by Spearman rank correlation over
the voxels where either map is non-zero. A correlation that stays near 1 means the map does not depend on those weights (SMOE
reads activations only, so it cannot react to layers above the ones it reads; that is expected).
The caller's model is never touched (a deep copy is randomised).
"""

from __future__ import annotations

import copy

import numpy as np


def parameter_layers(module) -> list[str]:
    """Names of the modules that own parameters directly, output side first (reverse registration order)."""
    names = [name for name, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _randomise(module, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    has_children = any(True for _ in module.children())
    if hasattr(module, "reset_parameters") and not has_children:
        module.reset_parameters()  # the layer's own initialisation distribution
        return
    with torch.no_grad():  # parameters set on a composite module (e.g. Linear3D): normal noise at their scale
        for p in module.parameters(recurse=False):
            scale = float(p.detach().float().std()) if p.numel() > 1 else 1.0
            p.copy_(torch.randn_like(p) * (scale if scale > 0 else 1.0))


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    # over the voxels where either map is non-zero: the zeros both maps share (outside the brain, in
    # the box around it) are one big tie that would make any two maps look alike
    keep = (a != 0) | (b != 0)
    a, b = a[keep], b[keep]
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def model_randomisation(module, inputs, methods, layers=None, seed: int = 0, **options) -> dict:
    """Cascading randomisation: ``{"layers": [...], "steps": [{"randomised": name, "spearman": {method: rho}}]}``.

    ``layers``: module names to randomise in that order (default :func:`parameter_layers`, output
    first). ``inputs`` and ``options`` are those of ``compute_maps``; with several inputs (N > 1)
    the correlation is the mean over inputs. ``None`` marks a constant map (no ranking).
    """
    from .engine import compute_maps

    methods = tuple(methods)
    trained = compute_maps(module, inputs, methods=methods, **options)
    model = copy.deepcopy(module)
    named = dict(model.named_modules())
    order = list(layers) if layers is not None else parameter_layers(model)
    single = np.ndim(next(iter(trained.values()))) == (inputs[0] if isinstance(inputs, tuple) else inputs).ndim - 2
    steps = []
    for depth, name in enumerate(order, start=1):
        _randomise(named[name], seed + depth)
        maps = compute_maps(model, inputs, methods=methods, **options)
        rhos = {}
        for m in methods:
            pairs = [(trained[m], maps[m])] if single else list(zip(trained[m], maps[m]))
            values = [r for r in (_spearman(a, b) for a, b in pairs) if r is not None]
            rhos[m] = round(float(np.mean(values)), 4) if values else None
        steps.append({"randomised": name or "(the model's own parameters)", "spearman": rhos})
    return {"layers": order, "methods": list(methods), "steps": steps}
