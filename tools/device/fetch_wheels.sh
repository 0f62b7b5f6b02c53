#!/usr/bin/env bash
# The pure-Python wheels that the device machines lack (their python3 3.12 has torch and
# triton but no mmengine or mmcv, and cannot reach a package index): mmengine, mmcv-lite
# (mmcv without compiled ops; vtpack_mm imports only its mmcv.cnn bricks) and their small
# dependencies, into .whl/ of the repository root (about 1.5 MiB). Run here, where pip can
# reach PyPI; tools/device/run_checks.sh installs them there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PIP="${PIP:-.venv/bin/pip}"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
"$PIP" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform any -d .whl \
  mmengine==0.10.7 mmcv-lite==2.1.0 addict==2.4.0 termcolor==3.3.0 yapf==0.43.0 \
  platformdirs==4.14.8
ls -l .whl
