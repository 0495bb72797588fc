"""The one table of explanation-map methods: every other module reads its names, titles and roles here
(a top-level module, not in ``explain``: reading the table must not import torch).

Adding a method is its formula in ``explain/engine.py`` (keyed by the name constant below) plus one row
below; a product or a smoothed variant of existing maps needs only the row. The engine still computes every
requested map from one forward and one gradient pass (the table only says what each map needs). The names
are written once, here: the engine and everything else use the constants and columns.

Columns:
- ``name``: the key in ``Analysis.maps``, report.json and the CLI's ``--methods`` (file names use
  ``file_stem``);
- ``title``: what a person reads (dock, layer names, figures, PDF);
- ``cam`` / ``smoe``: whether it needs the Grad-CAM layer's activations and gradients (such a map can be
  signed) / the SMOE layers' activations;
- ``factors``: a product map's two maps, multiplied element-wise (``product`` is then true);
- ``smoothed``: the one-pass CAM formula averaged over noisy copies of the input (Smooth Grad-CAM++);
- ``siamese``: offered for Siamese branches (Smooth Grad-CAM++'s noisy passes are not tiled there);
- ``default``: computed when nobody asks for specific methods;
- ``figure_rank``: which map a one-map figure shows (lowest first; None: never chosen by itself).
  The thesis's final picture is SMOE × Grad-CAM++.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    cam: bool
    smoe: bool
    factors: tuple[str, str] | None = None
    smoothed: str | None = None
    siamese: bool = True
    default: bool = False
    figure_rank: int | None = None

    @property
    def product(self) -> bool:
        return self.factors is not None

    @property
    def file_stem(self) -> str:
        """The name in file names: ``smoe*gradcam++`` -> ``smoexgradcampp``."""
        return self.name.replace("*", "x").replace("+", "p")


#: The names of the maps computed from captured activations (the engine's formulas are keyed by these).
GRADCAM = "gradcam"
GRADCAMPP = "gradcam++"
SMOE = "smoe"

TABLE: tuple[Method, ...] = (
    Method(GRADCAM, "Grad-CAM", cam=True, smoe=False, figure_rank=2),
    Method(GRADCAMPP, "Grad-CAM++", cam=True, smoe=False, default=True, figure_rank=1),
    Method("smooth-gradcam++", "Smooth Grad-CAM++", cam=True, smoe=False, smoothed=GRADCAMPP, siamese=False),
    Method(SMOE, "SMOE", cam=False, smoe=True, default=True, figure_rank=3),
    Method("smoe*gradcam++", "SMOE×Grad-CAM++", cam=True, smoe=True, factors=(SMOE, GRADCAMPP), default=True,
           figure_rank=0),
    Method("smoe*gradcam", "SMOE×Grad-CAM", cam=True, smoe=True, factors=(SMOE, GRADCAM)),
)
BY_NAME = {m.name: m for m in TABLE}

#: Every method, in the table's order.
ALL_METHODS = tuple(m.name for m in TABLE)
#: What an analysis computes when nobody asks for specific methods.
DEFAULT_METHODS = tuple(m.name for m in TABLE if m.default)
#: Methods offered for Siamese branches.
SIAMESE_METHODS = tuple(m.name for m in TABLE if m.siamese)
CAM_METHODS = tuple(m.name for m in TABLE if m.cam)
SMOE_METHODS = tuple(m.name for m in TABLE if m.smoe)
PRODUCT_METHODS = tuple(m.name for m in TABLE if m.product)
#: A one-map figure shows the first of these that was computed.
FIGURE_PREFERENCE = tuple(m.name for m in sorted((m for m in TABLE if m.figure_rank is not None),
                                                 key=lambda m: m.figure_rank))
#: The thesis's final map (SMOE × Grad-CAM++), what the dock selects first.
PREFERRED_METHOD = FIGURE_PREFERENCE[0]


def title(name: str) -> str:
    """A method's human title ("SMOE×Grad-CAM++"); an unknown name is returned as it is."""
    method = BY_NAME.get(name)
    return method.title if method else name


def file_stem(name: str) -> str:
    method = BY_NAME.get(name)
    return method.file_stem if method else name.replace("*", "x").replace("+", "p")


def figure_method(available) -> str | None:
    """The map a one-map figure shows among ``available`` (names): the first by figure rank."""
    return next((m for m in FIGURE_PREFERENCE if m in available), None)
