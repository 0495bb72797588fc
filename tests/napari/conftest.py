import sys
from pathlib import Path

import pytest

from napari_bavis.napari._staged_add import scene_canvas

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))


@pytest.fixture
def canvas_draws(qtbot):
    """``canvas_draws(viewer)``: a list that grows by one at each paint of the viewer's canvas, empty
    once the canvas has settled (no paint for 200 ms: a new window's first exposes and resizes paint)."""
    def start(viewer):
        seen = []
        scene_canvas(viewer).events.draw.connect(lambda event: seen.append(1))
        for _ in range(20):
            before = len(seen)
            qtbot.wait(200)
            if len(seen) == before:
                break
        seen.clear()
        return seen
    return start
