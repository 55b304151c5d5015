#!/usr/bin/env bash
# The GPU device check: from a fresh clone, on a CUDA machine, in at most 5 minutes, one JSON file.
#
#   git clone ... && cd unet-search && pip install -e . && bash bench/device_check.sh [OUT.json]
#
# Measures fit vs a bare mixed-precision loop at 256 x 256 (interleaved rounds: the ratio's min/median/max,
# fit's epoch split, fit's host syncs per training step), 1/2/4 trials packed on one GPU (images/s, GPU
# utilisation, peak memory per trial), loader-only items/s and a 4-trial Ray smoke study with
# gpus_per_trial 0.25 (bench/device/check.py says how). Exits 2 with one line on a machine without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/device_check.json}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The parts bound their own sizes; this is the hard stop of the whole check.
exec timeout --kill-after=10 300 python -m bench.device.check --out "$out"
