#!/usr/bin/env bash
# The first checks on a machine with a GPU (none has been lent to this project yet), in one
# run that fits the device tool's budget: run from the repository root there, after
# tools/device/fetch_wheels.sh here (carry .whl). Results and logs go to $OUT.
# With the device tool: run(command="bash tools/device/run_checks.sh", carry=[".whl"]).
#   1. the Triton kernels against the PyTorch references on CUDA tensors, compiled
#      (tests/test_ops/triton_cases.py);
#   2. DGE backbones (PVT, DPVT, DeiT) on the GPU against CPU, float64, eval and one
#      training step in each mode, with the PyTorch references and with the Triton kernels
#      (tools/analysis_tools/check_device.py);
#   3. PVT-S latency on the GPU, batch 1 and 8, vanilla against DGE at beta 0.5, with the
#      references and with the Triton kernels (benchmark_latency.py --out JSON).
# DEVICE=cpu runs the same steps without a GPU (Triton's interpreter, the CUDA branches on
# CPU, CPU latency at a small size): a rehearsal of the script itself.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PY:-python3}"
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-/tmp/device_checks}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ! "$PY" -c 'import mmengine, mmcv' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
status=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember a failure
  echo "== $1"
  "${@:2}" 2>&1 | tee "$OUT/$1.log"
  local rc=${PIPESTATUS[0]}
  echo "== $1: exit status $rc"
  [ "$rc" = 0 ] || status=1
}
"$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__,
"cuda", torch.cuda.is_available() and torch.cuda.get_device_name())' | tee "$OUT/versions.txt"
if [ "$DEVICE" = cuda ]; then
  step triton_cases env VTPACK_MM_TEST_DEVICE=cuda VTPACK_MM_TRITON=1 "$PY" -m pytest -q \
    -p no:cacheprovider --rootdir tests/test_ops tests/test_ops/triton_cases.py
  step check_device_references "$PY" tools/analysis_tools/check_device.py --device cuda
  step check_device_triton env VTPACK_MM_TRITON=1 "$PY" tools/analysis_tools/check_device.py \
    --device cuda
  LAT=(--model pvt --device cuda --batch 1 8 --repeats 20 --no-mmdet)
else
  step triton_cases env TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider \
    --rootdir tests/test_ops tests/test_ops/triton_cases.py
  step check_device_references "$PY" tools/analysis_tools/check_device.py --device cpu \
    --as-cuda --model dpvt --size 72 88
  LAT=(--model pvt --arch tiny --size 128 128 --batch 1 --repeats 2 --warmup 1 --no-mmdet)
fi
step latency_references "$PY" tools/analysis_tools/benchmark_latency.py "${LAT[@]}" \
  --out "$OUT/latency_references.json"
step latency_triton env VTPACK_MM_TRITON=1 "$PY" tools/analysis_tools/benchmark_latency.py \
  "${LAT[@]}" --out "$OUT/latency_triton.json"
echo "device checks: $([ $status = 0 ] && echo all passed || echo SOME FAILED) (logs in $OUT)"
exit $status
