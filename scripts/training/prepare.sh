#!/usr/bin/env bash
# On the GPU machine, once per lease (start.sh and probe.sh call it; it does nothing the second
# time): unpack espeak-ng, install the carried wheels, start the MPS daemon and speak the corpus
# into /tmp/corpus (~30 s on 16 cores). Needs .train_carry/{espeak-root.tar.xz,whl,ljspeech}.
set -u
C=.train_carry
[ -f /tmp/corpus/corpus.json ] && exit 0
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p /tmp/espeak && tar -C /tmp/espeak -xJf $C/espeak-root.tar.xz
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $C/whl/*.whl
# MPS lets both trainings' kernels share the GPU at once instead of taking turns
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog; mkdir -p /tmp/mps /tmp/mpslog
nvidia-cuda-mps-control -d 2>/dev/null && sleep 1 && echo "MPS on"
# one BLAS thread per worker: 16 workers x 16 threads made the corpus take 348 s instead of 30
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 -m tts_desktop.train.corpus \
  --data $C/ljspeech --out /tmp/corpus --espeak /tmp/espeak --jobs 16 2>&1 | tail -n 1
