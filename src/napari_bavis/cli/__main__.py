"""``python -m napari_bavis.cli``: the same as the ``napari-bavis`` command."""

import sys

from . import main

sys.exit(main())
