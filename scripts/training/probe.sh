#!/usr/bin/env bash
# On the GPU machine, before the trainings start (a quiet GPU): the graphed steps' GPU tests, then
# WaveGlow's training step as train.py runs it (CUDA graphs, fused Adam) with the operators that
# take longest (tts_desktop/train/speed.py), and at batch 96; `PROBE_EAGER=1` also times it eagerly,
# at batch 48 and 96. Results in $OUT/*.txt. Carry what start.sh's call A carries, less the shards.
set -u
[ -f /tmp/t_start ] || date +%s > /tmp/t_start   # the lease's clock (start.sh's END_MIN) starts here
bash scripts/training/prepare.sh
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
[ -S /tmp/mps/control ] && export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
# the graphed steps' GPU tests first: replay == eager, loss and gradients (~30 s)
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_train_graphed_gpu.py 2>&1 | tee $OUT/graphed_tests.txt | tail -n 3
S="python3 -m tts_desktop.train.speed --corpus /tmp/corpus --steps 20"
timeout 90 $S --graphs --fused --profile 25 2>&1 | tee $OUT/speed_graphs.txt | head -n 40
# the same at twice the batch: does the GPU have room for more segments per second? (~30 s)
timeout 90 $S --graphs --fused --batch-size 96 2>&1 | tee $OUT/speed_graphs_b96.txt | head -n 3
[ "${PROBE_EAGER:-0}" = 1 ] || exit 0
timeout 70 $S 2>&1 | tee $OUT/speed_eager.txt | head -n 3
timeout 90 $S --fused --batch-size 96 2>&1 | tee $OUT/speed_eager_b96.txt | head -n 3
