#!/usr/bin/env bash
# Wait SECONDS (default 540), then show both runs' last log lines and the GPU's memory in use.
sleep ${1:-540}
for M in tacotron2 waveglow; do [ -f /tmp/train_$M.log ] && { echo "== $M"; tail -n 2 /tmp/train_$M.log; }; done
nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu --format=csv,noheader
echo "lease at $(( $(date +%s) - $(cat /tmp/t_start) )) s"
