#!/usr/bin/env bash
# On the GPU machine, from the repository root, carrying .whl, .dle and .fixtures (docs/gpu-notes.md),
# before or after a training, never beside one: the benchmarks first, on a quiet GPU, then the whole
# GPU test suite in the background, log in /tmp/gpu_tests.log; collect it later with
# `bash scripts/device/collect_tests.sh`. bench_paused.sh with these sets and tests.
BENCH_SETS="${BENCH_SETS:-full b32}" GPU_TESTS="${GPU_TESTS:-tests/gpu tests/test_engine_cache.py}" \
  exec bash scripts/device/bench_paused.sh
