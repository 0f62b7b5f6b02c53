#!/usr/bin/env bash
# The paper's Pareto claim on the embedded demo data, on CPU: is a bigger backbone with DGE
# better than a smaller static one at the same measured cost? Trains (one seed):
#   pvt-t        the main job's vanilla PVT-T detector (reused from WORK_DIR/../demo/seed0
#                when the main job has run: the same config and seed), else trained (600)
#   pvt-s        the same detector with PVT-S (600 iterations)
#   pvt-s_retrofit     tools/retrofit.py on it: routers only, budget 0.5 (200)
#   pvt-s_retrofit_ft  the retrofit fine-tuned whole with labels and the budget (200)
# then tools/analysis_tools/pareto.py evaluates PVT-T, PVT-S and PVT-S + DGE at five
# budget-knob points (mAP with its interval) and times them all in one run: the whole
# detector at the demo size and the backbone at 800x1333. Writes WORK/report/pareto.png,
# summary.md and summary.json.
#
#   WORK_DIR  output folder (default work_dirs/pareto)
#   DEMO_DIR  the main job's folder, for its PVT-T checkpoint (default work_dirs/demo)
# Finished steps are kept and interrupted ones resumed: run it again to go on.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
PY=.venv/bin/python
DEMO=configs/demo
TINY=$DEMO/mask-rcnn_pvt-t_fpn_600i_shapes-128.py
SMALL=$DEMO/mask-rcnn_pvt-s_fpn_600i_shapes-128.py
SMALL_FT=$DEMO/mask-rcnn_pvt-s-dge-b0.5_fpn_ft-200i_shapes-128.py
WORK="${WORK_DIR:-work_dirs/pareto}"
MAIN="${DEMO_DIR:-work_dirs/demo}"
S=(--cfg-options "randomness.seed=0")

echo "[pareto] generating the shapes data in data/shapes (as tools/run_demo.sh does)"
$PY tools/misc/make_shapes_dataset.py data/shapes --num-val 600

TAG="[pareto]"
source tools/misc/run_step.sh

TINY_CKPT="$MAIN/seed0/vanilla/iter_600.pth"
if [ -f "$TINY_CKPT" ]; then
  echo "[pareto] 1/4 PVT-T: the main job's seed-0 checkpoint ($TINY_CKPT)"
else
  TINY_CKPT="$WORK/pvt-t/iter_600.pth"
  run_step "1/4 PVT-T vanilla" "$WORK/pvt-t" 600 $PY tools/train.py $TINY "${S[@]}"
fi
run_step "2/4 PVT-S vanilla" "$WORK/pvt-s" 600 $PY tools/train.py $SMALL "${S[@]}"
run_step "3/4 PVT-S retrofit (routers only)" "$WORK/pvt-s_retrofit" 200 \
  $PY tools/retrofit.py $SMALL "$WORK/pvt-s/iter_600.pth" --budget 0.5 --scope routers \
  --iters 200 "${S[@]}"
run_step "4/4 PVT-S retrofit + fine-tune" "$WORK/pvt-s_retrofit_ft" 200 \
  $PY tools/train.py $SMALL_FT "${S[@]}" "load_from=$WORK/pvt-s_retrofit/iter_200.pth"

echo "[pareto] evaluating and timing"
$PY tools/analysis_tools/pareto.py --tiny "$TINY_CKPT" --small "$WORK/pvt-s/iter_600.pth" \
  --small-dge "$WORK/pvt-s_retrofit_ft/iter_200.pth" --out-dir "$WORK/report"
echo "[pareto] report: $ROOT/$WORK/report (pareto.png, summary.md, summary.json)"
