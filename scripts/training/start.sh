#!/usr/bin/env bash
# On the GPU machine, from the repository root: start training MODEL (tacotron2 | waveglow) in the
# background until END_MIN minutes after the lease's first start.sh. The first call also unpacks
# espeak-ng and speaks the corpus (~30 s on 16 cores). MODEL continues from .train_carry/MODEL
# (exported FP16 shards) when that folder came along. See docs/training.md.
set -u
MODEL=$1; END_MIN=${2:-25}; C=.train_carry
[ -f /tmp/t_start ] || date +%s > /tmp/t_start
T_START=$(cat /tmp/t_start)
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
if [ ! -f /tmp/corpus/corpus.json ]; then
  mkdir -p /tmp/espeak && tar -C /tmp/espeak -xJf $C/espeak-root.tar.xz
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $C/whl/*.whl
  # MPS lets both trainings' kernels share the GPU at once instead of taking turns
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog; mkdir -p /tmp/mps /tmp/mpslog
  nvidia-cuda-mps-control -d 2>/dev/null && sleep 1 && echo "MPS on"
  # one BLAS thread per worker: 16 workers x 16 threads made the corpus take 348 s instead of 30
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 -m tts_desktop.train.corpus \
    --data $C/ljspeech --out /tmp/corpus --espeak /tmp/espeak --jobs 16 2>&1 | tail -n 1
fi
[ -S /tmp/mps/control ] && export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
INIT=""; if [ -d $C/$MODEL ]; then rm -rf /tmp/init_$MODEL; cp -r $C/$MODEL /tmp/init_$MODEL; INIT="--init-from /tmp/init_$MODEL"; fi
MIN=$(python3 -c "import time; print(round($END_MIN - (time.time() - $T_START) / 60, 2))")
setsid nohup python3 -m tts_desktop.train.train $MODEL --corpus /tmp/corpus --out /tmp/run_$MODEL \
  --minutes $MIN $INIT > /tmp/train_$MODEL.log 2>&1 < /dev/null &
echo $! > /tmp/train_$MODEL.pid
sleep 20; tail -n 2 /tmp/train_$MODEL.log; echo "$MODEL: $MIN minutes; lease at $(( $(date +%s) - T_START )) s"
