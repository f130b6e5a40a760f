#!/usr/bin/env bash
# The spatial-robustness table of docs/results.md (Engstrom et al., ICML 2019, Table 1 layout):
# cnn-small on Fashion-MNIST trained three ways with the same budget (standard, linf PGD-AT and
# worst-of-10 spatial training; the first two are the runs of scripts/compare_objectives.sh,
# trained here if missing), each evaluated by `robustlab spatial` on the first N test images.
# Run:  bash scripts/compare_spatial.sh          (N=1000 for the paper's size; default 500)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh
N=${N:-500}
TRAIN_SIZE=${TRAIN_SIZE:-20000}
EPOCHS=${EPOCHS:-3}
OBJECTIVES="ce pgd-at" bash scripts/compare_objectives.sh > /dev/null
if ! compgen -G "runs/objectives/fmnist-worst-of-10-*/model.safetensors" > /dev/null; then
  echo "== training worst-of-10"
  $PYTHON -m robustlab train examples/fashion-mnist-worst-of-10.toml --runs-dir runs/objectives \
    --set "data.train_size=$TRAIN_SIZE" --set "train.epochs=$EPOCHS"
fi
newest() { ls -d runs/objectives/fmnist-"$1"-2* | tail -1; }
ARGS=()
for pair in "standard=ce" "linf PGD-AT=pgd-at" "worst-of-10=worst-of-10"; do
  label=${pair%%=*}; run=$(newest "${pair#*=}")
  echo "== robustlab spatial $run --n $N"
  out=$($PYTHON -m robustlab spatial "$run" --n "$N" --runs-dir runs/spatial --quiet)
  folder=$(echo "$out" | sed -n 's/^run folder: //p' | head -1)
  ARGS+=("$label=$folder")
done
$PYTHON scripts/spatial_table.py "${ARGS[@]}"
