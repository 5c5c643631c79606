#!/usr/bin/env bash
# On the GPU machine, from the repository root, carrying .whl, .dle and .fixtures: the engine's
# benchmarks on a quiet GPU. Trainings running beside it (scripts/training/start.sh) are paused for
# them (SIGSTOP: their memory stays, their kernels stop) and resumed after. With
# GPU_TESTS="tests/gpu ..." it then starts those tests in the background, log in /tmp/gpu_tests.log
# (collect it with collect_tests.sh) -- only where they have the GPU's memory to themselves: in
# session 4 the suite beside the batch-128 Tacotron2 (74 GiB) made both run out of memory.
# GPU_TESTS_K: a pytest -k expression for them (e.g. "not layer_kernel").
# BENCH_SETS picks what to measure: b32 (FP16 batch 32), b32scalar (the same with the LSTMs on CUDA
# cores, TTS_DESKTOP_LSTM_TC=0), b1 (FP16 batch 1), full (FP32 + TF32 and FP16 at batch 1 with
# --compare-pytorch), layer (FP16 batch 32 and 1 with each WN layer as one kernel, wg_layer).
# WAIT_AFTER seconds of waiting at the end keep a training lease busy.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl .dle/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
PIDS=$(cat /tmp/train_*.pid 2>/dev/null)
resume() { [ -n "$PIDS" ] && kill -CONT $PIDS 2>/dev/null; }
trap resume EXIT
[ -n "$PIDS" ] && kill -STOP $PIDS 2>/dev/null && sleep 2 && echo "paused trainings: $PIDS"
nvidia-smi --query-gpu=name,driver_version,utilization.gpu,memory.used,clocks.sm,clocks.max.sm --format=csv,noheader
mkdir -p $OUT/bench
B="python3 -m tts_desktop.cli.main bench --device cuda --frames 580 --save $OUT/bench"
for S in ${BENCH_SETS:-b32 b32scalar b1}; do case $S in
  b32) echo "== fp16, batch 32"; timeout 120 $B --precision fp16 --batch 32 --runs 5 2>&1 | tee $OUT/bench_fp16_b32.log | tail -n 30 ;;
  b32scalar) echo "== fp16, batch 32, LSTMs on CUDA cores (TTS_DESKTOP_LSTM_TC=0)"
       TTS_DESKTOP_LSTM_TC=0 timeout 120 $B --precision fp16 --batch 32 --runs 3 2>&1 | tee $OUT/bench_fp16_b32_scalar.log | grep -E "decoder|avg|RTF|audio" ;;
  b1) echo "== fp16, batch 1"; timeout 120 $B --precision fp16 --runs 20 2>&1 | tee $OUT/bench_fp16.log | tail -n 30 ;;
  layer) echo "== fp16, each WN layer as one kernel (TTS_DESKTOP_WG_LAYER=1), batch 32 and batch 1"
       TTS_DESKTOP_WG_LAYER=1 timeout 120 $B --precision fp16 --batch 32 --runs 5 2>&1 | tee $OUT/bench_fp16_b32_layer.log | tail -n 20
       TTS_DESKTOP_WG_LAYER=1 timeout 120 $B --precision fp16 --runs 20 2>&1 | tee $OUT/bench_fp16_layer.log | tail -n 20 ;;
  full) echo "== fp32 + TF32, batch 1"; timeout 200 $B --precision fp32 --tf32 --runs 20 --compare-pytorch .dle 2>&1 | tee $OUT/bench_tf32.log | tail -n 30
        echo "== fp16, batch 1"; timeout 150 $B --precision fp16 --runs 20 --compare-pytorch .dle 2>&1 | tee $OUT/bench_fp16.log | tail -n 30 ;;
  *) echo "unknown benchmark set $S"; exit 2 ;;
esac; done
resume; trap - EXIT
echo "== benchmarks done in $(( $(date +%s) - T0 )) s${PIDS:+, trainings resumed}"
if [ -n "${GPU_TESTS:-}" ]; then
  mkdir -p /tmp/gpu_measured
  TTS_DESKTOP_TEST_OUT=/tmp/gpu_measured setsid nohup timeout 1200 python3 -m pytest -q -p no:cacheprovider \
    --tb=short $GPU_TESTS ${GPU_TESTS_K:+-k "$GPU_TESTS_K"} > /tmp/gpu_tests.log 2>&1 < /dev/null &
fi
sleep ${WAIT_AFTER:-0}
for M in tacotron2 waveglow; do [ -f /tmp/train_$M.log ] && { echo "== $M"; tail -n 2 /tmp/train_$M.log; }; done
[ -n "${GPU_TESTS:-}" ] && tail -n 3 /tmp/gpu_tests.log
echo "lease at $(( $(date +%s) - $(cat /tmp/t_start 2>/dev/null || echo $T0) )) s"
