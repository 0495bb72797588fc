#!/usr/bin/env bash
# Reproduce the two bundled demo models (src/napari_bavis/data/demo.pt and demo-siamese.pt).
# CPU: about an hour on 2 cores (native-space phantoms are generated and put through the pipeline's
# preprocessing once, into $NAPARI_BAVIS_CACHE, default a folder in the system temp dir); the GPU is used when present. Training writes into $WORK
# (default: a folder in the temp dir) with <out>.resume.pt state files beside the outputs, so a
# re-run resumes (RESUME=0 starts over); the finished files are then copied into $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then source .venv/bin/activate; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
OUT="${OUT:-src/napari_bavis/data}"
WORK="${WORK:-${TMPDIR:-/tmp}/napari-bavis-train}"
RESUME="${RESUME:-1}"
mkdir -p "$OUT" "$WORK"
python - "$WORK" "$RESUME" <<'PY'
import sys
from pathlib import Path

from napari_bavis.training import train_brain_age, train_siamese

out, resume = Path(sys.argv[1]), sys.argv[2] == "1"
command = "scripts/train_demo_models.sh"
ba = train_brain_age(out / "demo.pt", n_subjects=200, epochs=18, grid=3.0, seed=2026, resume=resume,
                     workers=2, command=command, through_pipeline=True)
print("demo:", ba.extra["training_metrics"], ba.bias_correction, flush=True)
siam = train_siamese(out / "demo-siamese.pt", n_subjects=160, epochs=40, grid=3.0, seed=2027, resume=resume,
                     lr=1e-3, init_trunk_from=out / "demo.pt",
                     workers=2, command=command, through_pipeline=True)
print("demo-siamese:", siam.extra["training_metrics"], flush=True)
for name in ("demo.pt", "demo-siamese.pt"):
    print(f"{name}: {(out / name).stat().st_size / 1e6:.2f} MB")
PY
cp "$WORK/demo.pt" "$WORK/demo-siamese.pt" "$OUT/"
ls -l "$OUT"/demo*.pt
