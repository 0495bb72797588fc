"""napari-bavis: explainable brain-age estimation from MRI (research use only, not a medical device).

The core (io, preprocess, models, explain, pipeline, cli) never imports Qt or napari;
`napari_bavis.napari` is the thin layer that wires the core to the viewer.
"""

__version__ = "0.1.0"
