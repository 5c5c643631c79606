#!/usr/bin/env bash
# Wait SECONDS (default 540), then show both runs' last log lines.
sleep ${1:-540}
for M in tacotron2 waveglow; do [ -f /tmp/train_$M.log ] && { echo "== $M"; tail -n 2 /tmp/train_$M.log; }; done
echo "lease at $(( $(date +%s) - $(cat /tmp/t_start) )) s"
