"""Tiling descriptions (see the shared contract): how a model cuts one input into tiles that run as
a batch, and how per-tile maps go back onto the input's grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SlabTiling:
    """``n_slabs`` consecutive slabs of ``slab_depth`` slices along the last axis of ``volume_shape``;
    slices past ``n_slabs * slab_depth`` belong to no slab (their map value is 0)."""

    volume_shape: tuple[int, int, int]
    n_slabs: int
    slab_depth: int

    @property
    def tile_spatial_shape(self) -> tuple[int, int, int]:
        return (self.volume_shape[0], self.volume_shape[1], self.slab_depth)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B * n_slabs, C, X, Y, slab_depth), input-major."""
        b, c, nx, ny, _ = x.shape
        covered = self.n_slabs * self.slab_depth
        slabs = x[..., :covered].reshape(b, c, nx, ny, self.n_slabs, self.slab_depth)
        return slabs.permute(0, 4, 1, 2, 3, 5).reshape(b * self.n_slabs, c, nx, ny, self.slab_depth)

    def assemble(self, tile_maps: torch.Tensor) -> torch.Tensor:
        k = tile_maps.shape[0]
        if k != self.n_slabs or tuple(tile_maps.shape[1:]) != self.tile_spatial_shape:
            raise ValueError(
                f"expected ({self.n_slabs}, {', '.join(map(str, self.tile_spatial_shape))}) slab maps, "
                f"got {tuple(tile_maps.shape)}"
            )
        out = tile_maps.new_zeros(self.volume_shape)
        covered = self.n_slabs * self.slab_depth
        out[..., :covered] = tile_maps.permute(1, 2, 0, 3).reshape(*self.volume_shape[:2], covered)
        return out


@dataclass(frozen=True)
class SliceTiling:
    """Every axial slice ``volume[:, :, k]`` is one tile; any number of slices."""

    slice_shape: tuple[int, int]

    @property
    def tile_spatial_shape(self) -> tuple[int, int]:
        return tuple(self.slice_shape)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) -> (B * Z, C, X, Y), input-major."""
        b, c, nx, ny, nz = x.shape
        return x.permute(0, 4, 1, 2, 3).reshape(b * nz, c, nx, ny)

    def assemble(self, tile_maps: torch.Tensor) -> torch.Tensor:
        if tuple(tile_maps.shape[1:]) != self.tile_spatial_shape:
            raise ValueError(f"expected (k, {self.slice_shape[0]}, {self.slice_shape[1]}) slice maps, "
                             f"got {tuple(tile_maps.shape)}")
        return tile_maps.permute(1, 2, 0).contiguous()
