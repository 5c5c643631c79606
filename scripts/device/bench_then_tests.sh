#!/usr/bin/env bash
# On the GPU machine, from the repository root, carrying .whl, .dle and .fixtures (docs/gpu-notes.md):
# the benchmarks first, on a quiet GPU, then the whole GPU test suite in the background (it can
# share the GPU with training: correctness does not care), log in /tmp/gpu_tests.log; collect it
# later with `bash scripts/device/collect_tests.sh`.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl .dle/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
mkdir -p $OUT/bench
B="python3 -m tts_desktop.cli.main bench --device cuda --frames 580 --save $OUT/bench"
echo "== fp32 + TF32, batch 1"; timeout 200 $B --precision fp32 --tf32 --runs 20 --compare-pytorch .dle 2>&1 | tee $OUT/bench_tf32.log | tail -n 30
echo "== fp16, batch 1"; timeout 150 $B --precision fp16 --runs 20 --compare-pytorch .dle 2>&1 | tee $OUT/bench_fp16.log | tail -n 30
echo "== fp16, batch 32"; timeout 120 $B --precision fp16 --batch 32 --runs 5 2>&1 | tee $OUT/bench_fp16_b32.log | tail -n 20
echo "== benchmarks done in $(( $(date +%s) - T0 )) s; GPU tests start in the background"
mkdir -p /tmp/gpu_measured
TTS_DESKTOP_TEST_OUT=/tmp/gpu_measured setsid nohup timeout 1200 python3 -m pytest -q -p no:cacheprovider \
  --tb=short tests/gpu tests/test_engine_cache.py > /tmp/gpu_tests.log 2>&1 < /dev/null &
