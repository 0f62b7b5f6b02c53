#!/usr/bin/env bash
# The main job, on the embedded demo data, on CPU:
#   1. set up .venv if needed (tools/setup_env.sh),
#   2. generate the shapes data (data/shapes, seconds, deterministic),
#   3. train Mask R-CNN with a PVT-T + DGE backbone at budget 0.5 (~8 min on 2 cores;
#      an interrupted run resumes from its last checkpoint, a finished one is kept),
#   4. evaluate COCO bbox/segm mAP (trained and untrained), beta against the budget,
#      static vs dynamic FLOPs, and draw the chosen granularities,
# and print where the report is. WORK_DIR (default work_dirs/demo) sets the output folder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
PY=.venv/bin/python
CONFIG=configs/demo/mask-rcnn_pvt-t-dge-b0.5_fpn_600i_shapes-128.py
WORK="${WORK_DIR:-work_dirs/demo}"
FINAL="$WORK/iter_600.pth"

echo "[demo] 1/3 generating the shapes data in data/shapes"
$PY tools/misc/make_shapes_dataset.py data/shapes

if [ -f "$FINAL" ]; then
  echo "[demo] 2/3 $FINAL exists: training already finished (delete $WORK to train again)"
elif [ -f "$WORK/last_checkpoint" ]; then
  echo "[demo] 2/3 resuming the interrupted training from $(cat "$WORK/last_checkpoint")"
  $PY tools/train.py "$CONFIG" --work-dir "$WORK" --resume
else
  echo "[demo] 2/3 training for 600 iterations (a log line every 10)"
  $PY tools/train.py "$CONFIG" --work-dir "$WORK"
fi

echo "[demo] 3/3 evaluating and writing the report"
$PY tools/misc/demo_report.py "$CONFIG" "$FINAL" --work-dir "$WORK" --out "$WORK/report"
echo
echo "[demo] report: $ROOT/$WORK/report (summary.md, summary.json, gates.png, beta_curve.png)"
