#!/usr/bin/env bash
# Set everything up (system packages, venv, test tools) and run the whole test suite under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --testing
. .venv/bin/activate
echo "test: ruff check"
ruff check src tests benchmarks scripts
export QT_API=pyqt6
exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest -q -p no:cacheprovider "$@"
