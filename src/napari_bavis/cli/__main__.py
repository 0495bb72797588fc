"""``python -m napari_bavis.cli``: the same as the ``napari-bavis`` command."""

from . import run

run()
