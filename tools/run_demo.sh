#!/usr/bin/env bash
# The main job: set up .venv if needed (tools/setup_env.sh), then run the demo.
# For now the demo runs a PVT-S + DGE backbone on a bundled sample image and prints the
# chosen granularities and the complexity ratio beta (training on the embedded demo
# data replaces it once the budget-training issue lands).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec .venv/bin/python tools/misc/dge_image_demo.py "$@"
