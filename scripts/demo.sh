#!/usr/bin/env bash
# The main job: set everything up, then open napari with the sample scan and the plugin.
# With no display, it runs headless under Xvfb and writes a screenshot (and results) to ./bavis-demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec python -m napari_bavis.napari.demo "$@"
fi
exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m napari_bavis.napari.demo --out "${BAVIS_DEMO_OUT:-bavis-demo}" "$@"
