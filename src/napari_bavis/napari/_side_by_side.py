"""Two scans' results side by side: napari's grid mode with one cell per scan (issue 13).

napari puts the grid's ``stride`` consecutive layers of the layer list into one cell, counting from
the bottom of the list; hidden layers keep their place in a cell but never make a cell of their own.
So each scan and its map layers are moved into one block at the bottom of the list (scan A's block
first: the left cell, then scan B's), the stride is the block size, and each cell shows one scan
under its own maps; the map shown is the same method on both (the maps panel's choice). Layers
added later go above the blocks and, when visible, get cells of their own (napari's rule), so the
other visible layers are hidden while the comparison is side by side and shown again after.
Which scan a cell shows is in its layer names (``<scan> · <method> · <model>``) and in the legend.
"""

from __future__ import annotations

from ._controls import _same


def blocks(viewer, scans, entries) -> list[list]:
    """Per scan layer: [scan, its map layers in ``entries`` order], keeping only layers in the viewer."""
    live = list(viewer.layers)
    out = []
    for name, scan in scans:
        block = [scan] + [e["layer"] for e in entries if e["scan"] == name]
        out.append([layer for layer in block if any(_same(layer, other) for other in live)])
    return out


def _grid(viewer):
    """napari's grid model: ``viewer.canvas.grid`` from napari 0.9 (``viewer.grid`` is deprecated
    there), ``viewer.grid`` before."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def _index(viewer, layer) -> int:
    return next(i for i, other in enumerate(viewer.layers) if _same(other, layer))


def arrange(viewer, groups: list[list]) -> list | None:
    """Grid mode with one cell per group (bottom of the layer list, in order). Other visible layers
    are hidden (they would get cells of their own) and returned, for ``release`` to show again.
    None if not possible (a group lost its scan or groups differ in size): the grid is left as it was."""
    if len(groups) < 2 or any(len(g) < 1 for g in groups) or len({len(g) for g in groups}) != 1:
        return None
    position = 0
    for group in groups:
        for layer in group:
            source = _index(viewer, layer)
            if source != position:
                viewer.layers.move(source, position)
            position += 1
    ours = [layer for group in groups for layer in group]
    hidden = [layer for layer in viewer.layers if layer.visible and not any(_same(layer, o) for o in ours)]
    for layer in hidden:
        layer.visible = False
    grid = _grid(viewer)
    grid.stride = len(groups[0])
    grid.shape = (-1, -1)
    grid.enabled = True
    viewer.reset_view()  # both brains whole in their cells (the one-view zoom cuts them off)
    return hidden


def release(viewer, hidden=()) -> None:
    """Back to one view; the layers ``arrange`` hid are shown again (those still in the viewer)."""
    grid = _grid(viewer)
    grid.enabled = False
    grid.stride = 1
    live = list(viewer.layers)
    for layer in hidden:
        if any(_same(layer, other) for other in live):
            layer.visible = True
    viewer.reset_view()
