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
#   SEEDS     seeds to run (default "0", ~23 min on 2 cores; "0 1 2" for the seed spread:
#             the report then gives each mAP's mean and standard deviation over seeds)
#   BUDGETS   other budgets gamma for the retrofit and its fine-tune, first seed only
#             (default none; "0.25 0.75": ~5 min each): the report's gamma-against-beta table
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
SEEDS="${SEEDS:-0}"
BUDGETS="${BUDGETS:-}"

echo "[demo] generating the shapes data in data/shapes"
# 600 validation scenes (the first 400 are those of --num-val 600): the 95 % bootstrap
# interval of the vanilla detector's segm mAP was ±0.022 with 400, ±0.06 with 40
# (docs/get_started.md); all three demo scripts write the same data
$PY tools/misc/make_shapes_dataset.py data/shapes --num-val 600

TAG="[demo]"
source tools/misc/run_step.sh

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

FIRST="$WORK/seed${SEEDS%% *}"
for budget in $BUDGETS; do
  S=(--cfg-options "randomness.seed=${SEEDS%% *}")
  run_step "budget $budget, retrofit (routers only)" "$FIRST/retrofit_b$budget" 200 \
    $PY tools/retrofit.py $VANILLA "$FIRST/vanilla/iter_600.pth" --budget "$budget" \
    --scope routers --iters 200 "${S[@]}"
  run_step "budget $budget, retrofit + fine-tune" "$FIRST/retrofit_ft_b$budget" 200 \
    $PY tools/train.py $FT "${S[@]}" "custom_hooks.0.budget=$budget" \
    "load_from=$FIRST/retrofit_b$budget/iter_200.pth"
done

echo "[demo] evaluating, sweeping the budget knob, publishing, writing the report"
$PY tools/misc/demo_report.py "$WORK" --out-dir "$WORK/report"
echo
echo "[demo] report: $ROOT/$WORK/report (summary.md, summary.json, knob.png, gates.png, beta_curve.png, metafile.yml)"
