"""Built-in architectures by name: ``build(name, **kwargs)`` and ``available()``.

A built model remembers ``architecture`` and ``architecture_kwargs`` so a checkpoint can record
how to rebuild it; ``task`` says whether it predicts an age or an embedding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import CheckpointError
from ..grid import FSL_MNI152_1MM, MNI_1P5, Grid, crop


@dataclass(frozen=True)
class ArchitectureInfo:
    factory: Callable[..., nn.Module]
    task: str  # "brain_age" | "siamese"
    grid: Grid  # the input grid the architecture expects by default
    input_kind: str  # "gm" | "t1"
    summary: str


def _ba_slab(**kw):
    from .ba_slab import BASlab
    return BASlab(**kw)


def _ba3d(**kw):
    from .ba3d import BA3D
    return BA3D(**kw)


def _sfcn(**kw):
    from .sfcn import SFCNBrainAge
    return SFCNBrainAge(**kw)


def _linear3d(**kw):
    from .linear3d import Linear3D
    return Linear3D(**kw)


def _siamese2d(**kw):
    from .siamese import Siamese2D
    return Siamese2D(**kw)


def _siamese3d(**kw):
    from .siamese import Siamese3D
    return Siamese3D(**kw)


#: SFCN's input: FSL MNI152 1 mm (182x218x182) centre-cropped to 160x192x160 (voxels 11, 13, 11 on), in FSL's
#: storage order (axis 0 runs right -> left: x = 79 ... -80 mm); see preprocess/input_space.py.
SFCN_GRID = crop(FSL_MNI152_1MM, (11, 13, 11), (160, 192, 160))

_REGISTRY: dict[str, ArchitectureInfo] = {
    "ba_slab": ArchitectureInfo(_ba_slab, "brain_age", MNI_1P5, "gm",
                                "thesis slab net: 20 axial slabs x 6 slices, 3D ResNet, sex in head, mean of slabs"),
    "ba3d": ArchitectureInfo(_ba3d, "brain_age", MNI_1P5, "gm",
                             "full-volume SFCN-style 3D CNN regressor, optional sex (default for training)"),
    "sfcn": ArchitectureInfo(_sfcn, "brain_age", SFCN_GRID, "t1",
                             "Peng et al. 2021 SFCN, 40 bins 42-82 y, expected bin centre"),
    "linear3d": ArchitectureInfo(_linear3d, "brain_age", MNI_1P5, "gm",
                                 "linear (ridge) brain-age model over a pooled volume, ensemble of weight maps, "
                                 "Grad-CAM = voxels that make the brain look older"),
    "siamese2d": ArchitectureInfo(_siamese2d, "siamese", MNI_1P5, "gm",
                                  "thesis ResNet-34-style 2D encoder on axial slices, mean slice embedding"),
    "siamese3d": ArchitectureInfo(_siamese3d, "siamese", MNI_1P5, "gm",
                                  "3D trunk encoder on the whole volume, 128-d embedding"),
}


def available() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def info(name: str) -> ArchitectureInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CheckpointError(
            f"unknown architecture {name!r}; built-in ones are: {', '.join(_REGISTRY)}"
        ) from None


def build(name: str, **kwargs) -> nn.Module:
    """A freshly initialised built-in model (eval mode is the caller's choice)."""
    arch = info(name)
    try:
        model = arch.factory(**kwargs)
    except TypeError as err:
        raise CheckpointError(f"cannot build {name!r} with {kwargs}: {err}") from None
    model.architecture = name
    model.architecture_kwargs = copy.deepcopy(kwargs)
    model.task = arch.task
    return model
