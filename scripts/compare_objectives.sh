#!/usr/bin/env bash
# The adversarial-training comparison of docs/results.md: cnn-small on Fashion-MNIST, eps = 0.1
# (linf), one run per objective with the same epoch budget and the same training subset, each
# evaluated on the first 1000 test images with PGD-20 and then robustlab's AutoAttack `fast`
# suite on the points PGD-20 left; then robustlab's strongest ensemble, `robustlab eval
# --version standard` (APGD-CE, APGD-T, FAB-T, Square-5000), on the first STANDARD_N test images
# of every model (0 skips it), and the markdown table printed at the end.
# Run:  bash scripts/compare_objectives.sh      (3 epochs on 20 000 images: ~15 min for issue 4's
#       six objectives + evaluation; issue 15's four each cost about a pgd-at run, not timed)
#       TRAIN_SIZE=55000 EPOCHS=6 bash scripts/compare_objectives.sh   (docs/results.md: ~1.5 h)
# Runs go to $RUNS (default runs/objectives/); an objective already done there is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh
TRAIN_SIZE=${TRAIN_SIZE:-20000}
EPOCHS=${EPOCHS:-3}
# Every objective with an examples/fashion-mnist-<objective>.toml (issue 15 added free, mart and
# the AWP variants); OBJECTIVES="pgd-at trades" runs a subset.
OBJECTIVES=${OBJECTIVES:-"ce fgsm-rs n-fgsm free pgd-at pgd-at-awp trades trades-awp mart weat"}
RUNS=${RUNS:-runs/objectives}
bash scripts/ensure-fashion-mnist.sh "$PYTHON"
for obj in $OBJECTIVES; do
  if compgen -G "$RUNS/fmnist-$obj-2*/results.json" > /dev/null; then
    echo "== $obj: already done, skipped"
    continue
  fi
  # A run killed mid-way (a checkpoint, no results.json) resumes instead of starting over.
  partial=$(for d in "$RUNS"/fmnist-"$obj"-2*; do
              if [ -d "$d/checkpoint" ]; then echo "$d"; fi; done | tail -1)
  if [ -n "$partial" ]; then
    echo "== $obj: resuming $partial"
    $PYTHON -m robustlab run --resume "$partial" "$@"
    continue
  fi
  echo "== $obj"
  $PYTHON -m robustlab run "examples/fashion-mnist-$obj.toml" --runs-dir "$RUNS" \
    --set "data.train_size=$TRAIN_SIZE" --set "train.epochs=$EPOCHS" "$@"
done
STANDARD_N=${STANDARD_N:-500}
if [ "$STANDARD_N" -gt 0 ]; then
  for obj in $OBJECTIVES; do
    if compgen -G "$RUNS/standard-$obj-2*/results.json" > /dev/null; then
      echo "== standard AutoAttack on $obj: already done, skipped"
      continue
    fi
    run=$(ls -d "$RUNS"/fmnist-"$obj"-2* | tail -1)
    echo "== standard AutoAttack on $run (n = $STANDARD_N)"
    $PYTHON -m robustlab eval "$run" --version standard --n "$STANDARD_N" --eps 0.1 \
      --runs-dir "$RUNS" --name "standard-$obj" --quiet
  done
fi
$PYTHON scripts/objectives_table.py "$RUNS"
