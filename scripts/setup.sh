#!/usr/bin/env bash
# Set up everything napari-bavis needs on a Debian machine: system GL/Xvfb packages, a venv, the package.
#   bash scripts/setup.sh            # runtime
#   bash scripts/setup.sh --testing  # runtime + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras="[all]"
[ "${1:-}" = "--testing" ] && extras="[all,testing]"

# napari needs a real OpenGL; on a machine without a screen it renders through Xvfb + Mesa (llvmpipe).
packages="xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3 libfontconfig1
          libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
          poppler-utils"  # poppler-utils: pdftoppm, which the tests use to render the PDF reports
missing=""
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null; then
  echo "setup: installing system packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU wheel of torch 2.13.0; an unpinned torch pulls gigabytes of CUDA packages.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${extras}"
echo "setup: ready ($(python -c 'import napari_bavis, torch, napari; print("napari-bavis", napari_bavis.__version__, "| torch", torch.__version__, "| napari", napari.__version__)'))"
