#!/usr/bin/env bash
# The energy tables of docs/results.md (Mirza et al., ECCV 2024, on Fashion-MNIST, cnn-small,
# eps = 0.1 linf):
#  1. shares of adversarial inputs with lower E(x) than natural, per attack family, for the
#     standard, PGD-AT, TRADES and WEAT models of the objective table (reused from
#     runs/objectives/ when scripts/compare_objectives.sh has trained them, else trained here
#     with the same configs);
#  2. the dE curve with its three phases: a long PGD-AT run with a step schedule (lr x0.1 at
#     epochs 20 and 30, the schedule after which Rice et al. 2020 see robust overfitting) on a
#     10 000-image subset, so that it overfits in reach of a CPU;
#  3. FID / KID / IS of 1000 SGLD samples (100 per class) and 1000 targeted-PGD samples of
#     every model, on the cached standard cnn-small feature network (trained once, ~2 min).
# Measured 2026-12-02 with N=300 (docs/results.md), 2 cores: training ce 2 min, pgd-at 15-20,
# trades 17-25, weat 17 (ranges: other jobs shared the cores part of the time), long run 20 min,
# energy of the 5 models 10.7 min, feature network ~1 min, each generate run 15-31 s.
# The first estimates, from the objective
# table's 6-epoch runs (pgd-at 15 min, trades/weat 17 min, ce 2 min at 55 000 images) and from
# timing SGLD and feature-net steps with other jobs sharing the cores (0.59 s per SGLD step on
# 250 images, 0.48 s per 128-image training batch):
#   training the 4 models, if runs/objectives/ lacks them   ~50 min (EPOCHS=6, TRAIN_SIZE=55000)
#   long PGD-AT run (40 epochs x 10 000 images)             ~20 min
#   energy, N=500 per model, 6 attacks + the TRADES check   ~10 min per model, ~50 min for 5
#     (about 700 forward+backward passes per image; C&W's 5 x 100 Adam steps are most of it)
#   default feature network (2 epochs, once, cached)        ~4-8 min
#   generate, 1000 samples: SGLD 100 steps ~4 min, PGD 60 steps ~2.5 min; 8 runs ~30 min
# A GPU cuts every line to a minute or two: add --device cuda to the commands.
# Run:  bash scripts/energy_table.sh          Runs go to $RUNS (default runs/energy/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh
RUNS=${RUNS:-runs/energy}
OBJ_RUNS=${OBJ_RUNS:-runs/objectives}
TRAIN_SIZE=${TRAIN_SIZE:-55000}
EPOCHS=${EPOCHS:-6}
N=${N:-500}
PER_CLASS=${PER_CLASS:-100}
bash scripts/ensure-fashion-mnist.sh "$PYTHON"
mkdir -p "$RUNS"

# A run folder with results.json is done (model.safetensors is rewritten every epoch); one
# with only a checkpoint was killed and resumes.
finished() {
  local d; for d in "$@"; do if [ -f "$d/results.json" ]; then echo "$d"; fi; done | tail -1
}
unfinished() {
  local d
  for d in "$@"; do
    if [ ! -f "$d/results.json" ] && [ -d "$d/checkpoint" ]; then echo "$d"; fi
  done | tail -1
}

models=()
for obj in ce pgd-at trades weat; do
  run=$(finished "$OBJ_RUNS"/fmnist-"$obj"-2* "$RUNS"/fmnist-"$obj"-2*)
  partial=$(unfinished "$RUNS"/fmnist-"$obj"-2*)
  if [ -z "$run" ] && [ -n "$partial" ]; then
    echo "== resuming $partial"
    $PYTHON -m robustlab train --resume "$partial" --quiet
    run=$partial
  elif [ -z "$run" ]; then
    echo "== training $obj"
    $PYTHON -m robustlab train "examples/fashion-mnist-$obj.toml" --runs-dir "$RUNS" \
      --set "data.train_size=$TRAIN_SIZE" --set "train.epochs=$EPOCHS" --quiet
    run=$(ls -d "$RUNS"/fmnist-"$obj"-2* | tail -1)
  fi
  models+=("$run")
done

long=$(finished "$RUNS"/fmnist-pgd-at-long-2*)
partial=$(unfinished "$RUNS"/fmnist-pgd-at-long-2*)
if [ -z "$long" ] && [ -n "$partial" ]; then
  echo "== resuming the long PGD-AT run $partial"
  $PYTHON -m robustlab train --resume "$partial" --quiet
  long=$partial
elif [ -z "$long" ]; then
  echo "== long PGD-AT run for the phases"
  $PYTHON -m robustlab train examples/fashion-mnist-pgd-at.toml --runs-dir "$RUNS" \
    --set run.name=fmnist-pgd-at-long --set data.train_size=10000 --set train.epochs=40 \
    --set train.schedule=step --set "train.milestones=[20, 30]" --set train.lr=0.05 --quiet
  long=$(ls -d "$RUNS"/fmnist-pgd-at-long-2* | tail -1)
fi

echo "== energy landscape of ${models[*]} and $long"
$PYTHON -m robustlab energy "${models[@]}" "$long" --n "$N" --eps 0.1 --runs-dir "$RUNS" --quiet

# Sampler outermost: the SGLD table (the issue's FID comparison) is complete first.
for sampler in sgld pgd; do
  for run in "${models[@]}"; do
    echo "== generate: $sampler from $run"
    $PYTHON -m robustlab generate "$run" --sampler "$sampler" --seed-init pca \
      --n-per-class "$PER_CLASS" --runs-dir "$RUNS" --quiet
  done
done
# The markdown tables for docs/results.md, from the newest energy run and the generate runs.
$PYTHON - "$RUNS" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
e = json.loads(sorted(root.glob("energy-2*/results.json"))[-1].read_text())
attacks = e["attacks"]
print("| model | objective | clean | " + " | ".join(f"{a} ({e['families'][a]})" for a in attacks) + " |")
print("|" + " --- |" * (3 + len(attacks)))
for m in e["models"]:
    rows = {r["attack"]: r for r in m["attacks"]}
    # share lower over all images / over the broken ones (how many), and mean E(x) - E(x_adv)
    cells = [f"{100 * rows[a]['share_lower_energy']:.1f} / "
             f"{100 * rows[a]['share_lower_energy_success']:.1f} ({rows[a]['n_success']}), "
             f"{rows[a]['delta_energy_mean']:+.2f}" for a in attacks]
    print(f"| {m['label']} | {m['objective']} | {100 * m['clean_accuracy']:.1f} | " + " | ".join(cells) + " |")
for m in e["models"]:
    ph = m["phases"]
    if ph.get("available"):
        print(f"\n{m['label']}: phases start at epochs {ph['phase_starts']}, best robust epoch "
              f"{ph['best_robust_epoch']}, robust overfitting from {ph['robust_overfitting_epoch']}")
print()
print("| model | sampler | n | FID | KID | IS | FID of the seeds |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for f in sorted(root.glob("generate-2*/results.json")):
    g = json.loads(f.read_text())
    m, s = g["metrics"], g["seed_metrics"]
    fid = next(k for k in m if k.startswith("FID["))
    kid = next(k for k in m if k.startswith("KID[") and not k.endswith("std"))
    is_ = next(k for k in m if k.startswith("IS[") and not k.endswith("std"))
    print(f"| {pathlib.Path(g['model']).name} | {g['sampler']} | {g['n_samples']} | {m[fid]:.2f} | "
          f"{m[kid]:.4f} | {m[is_]:.2f} | {s[fid]:.2f} |")
print(f"\nfeature network: {fid[4:-1]}")
PY
