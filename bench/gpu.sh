#!/usr/bin/env bash
# The GPU check: fit vs a hand-written bf16 + channels_last loop (MobileNetV2, ResNet-50,
# 224 px, batch 128), the LR-finder benchmark and the headline race on the GPU; writes
# bench/results/gpu.{json,md} and prints the table. Installs nothing: it runs on the
# project's set-up (.venv when present, else the python on PATH, e.g. a lent machine's
# preinstalled torch). Capped at 8 minutes.
#   bash bench/gpu.sh              # on a GPU machine
#   bash bench/gpu.sh --dry-run    # tiny sizes on the CPU (the test suite runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$py" -m bench.bench_gpu "$@"
