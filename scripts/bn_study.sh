#!/usr/bin/env bash
# Xie and Yuille's batch-norm study (ICLR 2020) on Fashion-MNIST, eps = 0.1 linf, PGD-10 AT with
# a batch-norm ResNet (base width 16): half clean + half adversarial through one BN, adversarial
# only, the same mixed batches with mixture BN (both BN sets evaluated), and adversarial-only AT
# at resnet-10/18/34/50 (resnet-18 is the adv-only run). Each run is evaluated by `robustlab run`
# (PGD-20, then AutoAttack `fast`, on 1000 test images) and then by `robustlab eval --version
# standard` on the first STANDARD_N (both BN sets for mixbn); scripts/bn_study_table.py prints
# the table with paired comparisons.
# Run:  bash scripts/bn_study.sh                          (20 000 images, 5 epochs, every setting)
#       SETTINGS="half-clean adv-only mixbn depth-10 depth-34" TRAIN_SIZE=20000 EPOCHS=3 \
#         STANDARD_N=200 bash scripts/bn_study.sh --quiet      (docs/results.md, 2026-12-02)
#       SETTINGS="adv-only depth-10 depth-34" TRAIN_SIZE=20000 EPOCHS=3 STANDARD_N=200 \
#         bash scripts/bn_study.sh --quiet      (the depth series with standard, docs/results.md)
# Cost on 2 CPU cores at 20 000 images x 3 epochs: about 6 min of training for half-clean and
# mixbn (only half of each batch is attacked), 9 for resnet-18 adv-only; resnet-50 is about 2.7x
# resnet-18 per step. On one GPU, minutes per run.
# Runs go to $RUNS (default runs/bn-study/); a setting already done there is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh
TRAIN_SIZE=${TRAIN_SIZE:-20000}
EPOCHS=${EPOCHS:-5}
STANDARD_N=${STANDARD_N:-500}
# The depth series is resnet-10, resnet-18 (adv-only: the same config, so not trained twice),
# resnet-34 and resnet-50.
SETTINGS=${SETTINGS:-"half-clean adv-only mixbn depth-10 depth-34 depth-50"}
RUNS=${RUNS:-runs/bn-study}
bash scripts/ensure-fashion-mnist.sh "$PYTHON"
for s in $SETTINGS; do
  if compgen -G "$RUNS/bn-$s-2*/results.json" > /dev/null; then
    echo "== $s: already done, skipped"
    continue
  fi
  echo "== $s"
  $PYTHON -m robustlab run "examples/bn-study-$s.toml" --runs-dir "$RUNS" \
    --set "data.train_size=$TRAIN_SIZE" --set "train.epochs=$EPOCHS" "$@"
done
if [ "$STANDARD_N" -gt 0 ]; then
  for s in $SETTINGS; do
    run=$(ls -d "$RUNS"/bn-"$s"-2* | tail -1)
    bns="none"
    [ "$s" = "mixbn" ] && bns="adv clean"
    for bn in $bns; do
      name="standard-$s"; extra=()
      if [ "$bn" != "none" ]; then name="standard-$s-$bn"; extra=(--bn "$bn"); fi
      if compgen -G "$RUNS/$name-2*/results.json" > /dev/null; then
        echo "== $name: already done, skipped"
        continue
      fi
      echo "== standard AutoAttack on $run ${extra[*]:-} (n = $STANDARD_N)"
      $PYTHON -m robustlab eval "$run" --version standard --n "$STANDARD_N" --eps 0.1 \
        --runs-dir "$RUNS" --name "$name" --quiet "${extra[@]}"
    done
  done
fi
$PYTHON scripts/bn_study_table.py "$RUNS"
