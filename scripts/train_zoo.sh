#!/usr/bin/env bash
# Train the Fashion-MNIST model zoo (10 models, 4 families, standard and adversarially trained)
# and benchmark it as Su et al. (ECCV 2018) do. Sized for 2 CPU cores, about 45 minutes in all.
# Run:  bash scripts/train_zoo.sh [--quiet]   (extra options go to every `robustlab train`)
# Each model lands in runs/zoo/zoo-<model>-<timestamp>; examples/zoo-fashion-mnist.toml finds
# the newest folder of each name. A model already trained is skipped (delete its folder to
# retrain). The benchmark's own run folder goes to runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh
ROBUSTLAB="$PYTHON -m robustlab"

bash scripts/ensure-fashion-mnist.sh "$PYTHON"

MODELS=(
  cnn-small-ce cnn-small-fgsm-rs cnn-small-pgd-at
  resnet-10-w8-ce resnet-10-w16-ce resnet-10-w16-fgsm-rs
  wrn-10-1-ce wrn-16-2-ce wrn-16-2-fgsm-rs
  preact-resnet-18-w8-ce
)
for m in "${MODELS[@]}"; do
  if compgen -G "runs/zoo/zoo-$m-*/model.safetensors" > /dev/null; then
    echo "== $m: already trained, skipped"
    continue
  fi
  echo "== training $m"
  $ROBUSTLAB train "examples/zoo/$m.toml" --runs-dir runs/zoo --set "run.name=zoo-$m" "$@"
done

echo "== benchmarking the zoo"
$ROBUSTLAB zoo examples/zoo-fashion-mnist.toml
