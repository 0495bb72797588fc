"""A small dock widget: axial/coronal/sagittal planes and the radiological/neurological switch."""


from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, Label

from .. import settings
from ._display import CONVENTIONS, PLANES, apply_view

if TYPE_CHECKING:
    import napari

RESEARCH_ONLY = "Research use only — not a medical device."


class DisplayWidget(Container):
    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__(labels=True)
        self._viewer = viewer
        self.plane = ComboBox(label="Plane", choices=PLANES, value="axial", tooltip="Which slices the slider walks through")
        self.convention = ComboBox(
            label="Convention",
            choices=CONVENTIONS,
            value=settings.load()["convention"],
            tooltip="Neurological: patient's right on the right. Radiological: patient's right on the left.",
        )
        self.extend([self.plane, self.convention, Label(value=RESEARCH_ONLY)])
        # Three rows: never more height than that, so a dock below it (the analysis) gets the rest.
        self.native.setMaximumHeight(self.native.sizeHint().height())
        self.plane.changed.connect(self._apply)
        self.convention.changed.connect(self._on_convention)
        viewer.layers.events.inserted.connect(self._apply)
        self._apply()

    def _on_convention(self) -> None:
        settings.save(convention=self.convention.value)
        self._apply()

    def _apply(self, *_) -> None:
        apply_view(self._viewer, self.plane.value, self.convention.value)
