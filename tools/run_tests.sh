#!/usr/bin/env bash
# Set up .venv if needed (tools/setup_env.sh), then run the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k pooling`. Without them,
# the mechanism and backbone tests run a second time with VTPACK_MM_AS_CUDA=1: CPU tensors
# take every branch CUDA tensors take (the references, padded attention), so CI exercises
# a GPU run's code paths on a machine without one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
.venv/bin/python -m pytest tests "$@"
if [ $# -eq 0 ]; then
    echo "[tests] again on the CUDA code paths (VTPACK_MM_AS_CUDA=1)"
    VTPACK_MM_AS_CUDA=1 .venv/bin/python -m pytest tests/test_dge \
        tests/test_models/test_backbone_contract.py tests/test_models/test_variable_queries.py
fi
