#!/usr/bin/env bash
# The main job: set everything up, then open napari with a sample scan (the "old AD-like" phantom),
# the plugin's widgets and the brain-age analysis with the bundled demo model.
# With no display, the same viewer is rendered off-screen (Xvfb): ./bavis-demo/ gets screenshot.png
# and results/ (every map as NIfTI in the scan's space, figure.png, report.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec python -m napari_bavis.napari.demo "$@"
fi
out="${BAVIS_DEMO_OUT:-bavis-demo}"
if ! xvfb-run -a -s "-screen 0 1400x1000x24" python -m napari_bavis.napari.demo --out "$out" "$@"; then
  echo "demo: the off-screen viewer failed; running the same analysis with the command line instead" >&2
  exec napari-bavis demo --out "$out/results"
fi
