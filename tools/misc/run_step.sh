# Sourced by the demo scripts (tools/run_demo.sh, run_seg_demo.sh, run_pareto.sh).
#
# run_step NAME DIR ITERS COMMAND...: skip when DIR/iter_ITERS.pth exists, resume when DIR
# holds a checkpoint (COMMAND gets --resume), else start; COMMAND gets --work-dir DIR. The
# wall time of each attempt is added to DIR/wall_seconds. TAG (e.g. "[demo]") starts every
# line it prints.
run_step() {
  local name=$1 dir=$2 iters=$3
  shift 3
  if [ -f "$dir/iter_$iters.pth" ]; then
    echo "${TAG:-[step]} $name: finished earlier ($dir/iter_$iters.pth)"
    return
  fi
  local resume=()
  if [ -f "$dir/last_checkpoint" ]; then
    echo "${TAG:-[step]} $name: resuming from $(cat "$dir/last_checkpoint")"
    resume=(--resume)
  else
    echo "${TAG:-[step]} $name: $iters iterations (a log line every 10)"
  fi
  local start=$SECONDS
  "$@" --work-dir "$dir" "${resume[@]}"
  echo $((SECONDS - start)) >> "$dir/wall_seconds"
}
