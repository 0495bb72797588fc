#!/usr/bin/env bash
# Reproduce the bundled real-brain model src/napari_bavis/data/ds002748.pt from OpenNeuro ds002748
# (60 real T1 scans, CC0; ../shared/data/ds002748 beside the project unless BIDS is set).
# Every scan goes through the pipeline's own preprocessing once (cached in $NAPARI_BAVIS_CACHE, default
# a folder in the system temp dir; about 10 min on 2 idle cores), then 5-fold cross-validation by
# subject against the two baselines and the final fit (seconds). Prints the cross-validated table.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then source .venv/bin/activate; fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # two worker processes, one thread each
BIDS="${BIDS:-../shared/data/ds002748}"
OUT="${OUT:-src/napari_bavis/data/ds002748.pt}"
[ -f "$BIDS/participants.tsv" ] || { echo "train_real_model: no BIDS dataset at $BIDS (set BIDS=...)" >&2; exit 2; }
napari-bavis train real-brain-age "$OUT" --bids "$BIDS" --workers 2 --seed 0
napari-bavis models "$OUT"
