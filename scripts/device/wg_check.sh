#!/usr/bin/env bash
# On the GPU machine, from the repository root, carrying .whl, .fixtures and .dle: the WaveGlow GPU
# tests (log $OUT/wg_tests.txt, with each test's printed errors), then the stage timings of
# tests/gpu/bench_stages.py (FP16 variants, batch 1 and batch 8; $OUT/bench_stages.txt). A quick
# check of a WaveGlow change before the whole suite and the end-to-end benchmarks.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl .dle/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${TIMEOUT:-240} python3 -m pytest -q -rP -p no:cacheprovider --tb=short tests/gpu/test_waveglow_gpu.py \
  > $OUT/wg_tests.txt 2>&1
grep -E "^(full|golden)|passed|failed|Error" $OUT/wg_tests.txt | tail -n 25
timeout ${BENCH_TIMEOUT:-240} python3 tests/gpu/bench_stages.py --only-fp16 --skip-others --reps ${REPS:-20} \
  --batch ${BATCH:-8} > $OUT/bench_stages.txt 2>&1
tail -n 30 $OUT/bench_stages.txt
