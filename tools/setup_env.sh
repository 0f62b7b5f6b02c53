#!/usr/bin/env bash
# Create or update the virtual environment at .venv (repo root) with the pinned OpenMMLab
# stack and vtpack_mm installed in editable mode. Idempotent: it does nothing when the
# requirements, setup.py and ops/ are unchanged since the last successful run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.vtpack_mm-setup"
C="-c requirements/constraints.txt"

# the compiled ops' sources count too: a changed kernel is rebuilt
want="$(cat requirements/*.txt setup.py $(find ops -type f | sort) | sha256sum | cut -d' ' -f1)"
if [ -x "$PY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi

step() { echo; echo "[setup $(date +%H:%M:%S)] $*"; }
t0=$SECONDS
if [ ! -x "$PY" ]; then
  step "creating virtual environment at .venv"
  python3 -m venv "$VENV"
fi
PIP=("$PY" -m pip install --progress-bar on)
export PIP_DISABLE_PIP_VERSION_CHECK=1

step "1/5 build tools (setuptools, wheel, ninja, numpy)"
"${PIP[@]}" $C -r requirements/build.txt

step "2/5 PyTorch and runtime dependencies"
"${PIP[@]}" $C -r requirements/runtime.txt

TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__)')"
if "$PY" -c "import mmcv, sys; from mmcv.ops import nms; sys.exit(mmcv.__version__ != '2.1.0')" 2>/dev/null; then
  step "3/5 mmcv 2.1.0 with compiled ops is already installed"
else
  # mmcv's compiled ops are tied to the torch they were built against, so its wheel is kept
  # in a cache folder named after that torch (pip's own cache would reuse a stale build).
  WHEELS="${VTPACK_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vtpack_mm}/mmcv-2.1.0-torch-$TORCH_VER"
  if ! ls "$WHEELS"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    step "3/5 building mmcv 2.1.0 with its CPU ops against torch $TORCH_VER (~20 min on 2 cores, once per machine)"
    ( s=$SECONDS; while sleep 60; do echo "[setup] ... mmcv still building, $(( (SECONDS - s) / 60 )) min"; done ) &
    hb=$!
    trap 'kill $hb 2>/dev/null || true' EXIT
    MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel --no-cache-dir --no-build-isolation --no-deps \
      -w "$WHEELS.tmp" "mmcv==2.1.0"
    mkdir -p "$WHEELS" && mv "$WHEELS.tmp"/mmcv-*.whl "$WHEELS"/ && rm -rf "$WHEELS.tmp"
    kill $hb 2>/dev/null || true
  fi
  step "3/5 installing mmcv 2.1.0 from $WHEELS"
  "${PIP[@]}" --force-reinstall --no-deps "$WHEELS"/mmcv-2.1.0-*.whl
fi

step "4/5 mmengine, mmdet, mmsegmentation, mmpretrain, test and optional tools"
"${PIP[@]}" $C -r requirements/mminstall.txt -r requirements/tests.txt -r requirements/optional.txt

step "5/5 vtpack_mm (editable) and its compiled CPU ops (ops/csrc, ~1 min)"
MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" --no-build-isolation --use-pep517 --no-deps -e .

echo "$want" > "$STAMP"
step "done in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s"
