#!/usr/bin/env bash
# The main job, on the embedded demo data, on CPU: what DGE costs in accuracy and what it
# saves, for Mask R-CNN PVT-T on the shapes data, four ways (per seed):
#   vanilla      the vanilla detector trained from scratch (600 iterations)
#   dge_scratch  the DGE detector at budget 0.5 trained from scratch (600 iterations)
#   retrofit     the vanilla checkpoint made dynamic by tools/retrofit.py (routers only,
#                200 iterations of distillation, no labels)
#   retrofit_ft  the retrofit, fine-tuned whole with labels and the budget (200 iterations)
# then evaluates all of them, sweeps the budget knob, publishes the checkpoints and writes
# WORK/report (summary.md, summary.json, knob.png, gates.png, beta_curve.png, metafile.yml).
#
#   SEEDS   seeds to run (default "0 1": ~16 min each on 2 cores; SEEDS=0 for one)
#   WORK_DIR  output folder (default work_dirs/demo)
# Every step is kept once finished and resumed when interrupted: run it again to go on.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
PY=.venv/bin/python
DEMO=configs/demo
VANILLA=$DEMO/mask-rcnn_pvt-t_fpn_600i_shapes-128.py
DGE=$DEMO/mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py
FT=$DEMO/mask-rcnn_pvt-t-dge-b0.5_fpn_ft-200i_shapes-128.py
WORK="${WORK_DIR:-work_dirs/demo}"
SEEDS="${SEEDS:-0 1}"

echo "[demo] generating the shapes data in data/shapes"
# 400 validation scenes: the 95 % bootstrap interval of the vanilla detector's bbox mAP
# is about ±0.02 there (±0.06 with 40; docs/get_started.md)
$PY tools/misc/make_shapes_dataset.py data/shapes --num-val 400

# run_step NAME DIR ITERS COMMAND...: skip when DIR/iter_ITERS.pth exists, resume when DIR
# holds a checkpoint, else start; the wall time of each attempt is added to DIR/wall_seconds
run_step() {
  local name=$1 dir=$2 iters=$3
  shift 3
  if [ -f "$dir/iter_$iters.pth" ]; then
    echo "[demo] $name: finished earlier ($dir/iter_$iters.pth)"
    return
  fi
  local resume=()
  if [ -f "$dir/last_checkpoint" ]; then
    echo "[demo] $name: resuming from $(cat "$dir/last_checkpoint")"
    resume=(--resume)
  else
    echo "[demo] $name: $iters iterations (a log line every 10)"
  fi
  local start=$SECONDS
  "$@" --work-dir "$dir" "${resume[@]}"
  echo $((SECONDS - start)) >> "$dir/wall_seconds"
}

for seed in $SEEDS; do
  W="$WORK/seed$seed"
  S=(--cfg-options "randomness.seed=$seed")
  echo "[demo] === seed $seed ==="
  run_step "seed $seed, 1/4 vanilla" "$W/vanilla" 600 $PY tools/train.py $VANILLA "${S[@]}"
  run_step "seed $seed, 2/4 DGE from scratch" "$W/dge_scratch" 600 \
    $PY tools/train.py $DGE "${S[@]}"
  run_step "seed $seed, 3/4 retrofit (routers only)" "$W/retrofit" 200 \
    $PY tools/retrofit.py $VANILLA "$W/vanilla/iter_600.pth" --budget 0.5 --scope routers \
    --iters 200 "${S[@]}"
  run_step "seed $seed, 4/4 retrofit + fine-tune" "$W/retrofit_ft" 200 \
    $PY tools/train.py $FT --cfg-options "randomness.seed=$seed" \
    "load_from=$W/retrofit/iter_200.pth"
done

echo "[demo] evaluating, sweeping the budget knob, publishing, writing the report"
$PY tools/misc/demo_report.py "$WORK" --out-dir "$WORK/report"
echo
echo "[demo] report: $ROOT/$WORK/report (summary.md, summary.json, knob.png, gates.png, beta_curve.png, metafile.yml)"
