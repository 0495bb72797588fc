"""Voxel grids the models live on: a shape plus a voxel-to-RAS-mm affine.

Arrays on this project's model grids are stored in NIfTI (i, j, k) order with a
RAS-aligned affine, so axis 0 runs Left->Right, axis 1 Posterior->Anterior and axis 2
Inferior->Superior; axial slices are ``array[:, :, k]``. A published model's grid keeps
its own storage order in its affine (SFCN: FSL's, axis 0 Right->Left): code that maps
through ``affine`` needs no special case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray  # 4x4 voxel index -> RAS mm

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @classmethod
    def from_bbox(cls, bbox_mm, voxel_size: float) -> "Grid":
        """Axis-aligned RAS grid whose first/last voxel centres sit on the box corners."""
        lo = np.array([b[0] for b in bbox_mm], dtype=float)
        hi = np.array([b[1] for b in bbox_mm], dtype=float)
        shape = tuple(int(round(n)) + 1 for n in (hi - lo) / voxel_size)
        affine = np.eye(4)
        affine[:3, :3] *= voxel_size
        affine[:3, 3] = lo
        return cls(shape=shape, affine=affine)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "affine": np.asarray(self.affine, float).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        return cls(shape=tuple(int(s) for s in d["shape"]), affine=np.asarray(d["affine"], dtype=float))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Grid)
            and self.shape == other.shape
            and np.allclose(self.affine, other.affine)
        )

    def __hash__(self) -> int:
        return hash((self.shape, tuple(np.round(self.affine, 6).ravel())))


#: The thesis / SPM-DARTEL / brainageR grid: 121x145x121 voxels at 1.5 mm, MNI box -90..90, -126..90, -72..108.
MNI_1P5 = Grid.from_bbox(((-90, 90), (-126, 90), (-72, 108)), 1.5)

#: FSL's MNI152_T1_1mm grid: 182x218x182 voxels, voxel (i, j, k) -> (90 - i, j - 126, k - 72) mm, stored "LAS"
#: (axis 0 runs Right->Left). Defined from FSL's known affine: FSL's file itself is not shipped here.
FSL_MNI152_1MM = Grid(shape=(182, 218, 182),
                      affine=np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]]))


def crop(grid: Grid, start, shape) -> Grid:
    """The sub-grid of ``grid`` from voxel ``start`` with ``shape`` voxels, with its own affine."""
    affine = np.array(grid.affine, float)
    affine[:3, 3] = affine[:3, :3] @ np.asarray(start, float) + affine[:3, 3]
    return Grid(shape=tuple(int(n) for n in shape), affine=affine)
