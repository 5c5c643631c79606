#!/usr/bin/env bash
# On the GPU machine, from the repository root: start training MODEL (tacotron2 | waveglow) in the
# background until END_MIN minutes after the lease's first start.sh. The first call also unpacks
# espeak-ng and speaks the corpus (~30 s on 16 cores). MODEL continues from .train_carry/MODEL
# (exported FP16 shards) when that folder came along. Arguments after END_MIN go to train.py
# (e.g. `--graphs off`). See docs/training.md.
set -u
MODEL=$1; END_MIN=${2:-25}; C=.train_carry
[ -f /tmp/t_start ] || date +%s > /tmp/t_start
T_START=$(cat /tmp/t_start)
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
bash scripts/training/prepare.sh
[ -S /tmp/mps/control ] && export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
INIT=""; if [ -d $C/$MODEL ]; then rm -rf /tmp/init_$MODEL; cp -r $C/$MODEL /tmp/init_$MODEL; INIT="--init-from /tmp/init_$MODEL"; fi
MIN=$(python3 -c "import time; print(round($END_MIN - (time.time() - $T_START) / 60, 2))")
setsid nohup python3 -m tts_desktop.train.train $MODEL --corpus /tmp/corpus --out /tmp/run_$MODEL \
  --minutes $MIN $INIT "${@:3}" > /tmp/train_$MODEL.log 2>&1 < /dev/null &
echo $! > /tmp/train_$MODEL.pid
sleep 20; tail -n 2 /tmp/train_$MODEL.log; echo "$MODEL: $MIN minutes; lease at $(( $(date +%s) - T_START )) s"
