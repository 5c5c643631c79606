#!/usr/bin/env bash
# End both runs now, the ordinary way (SIGUSR1: checkpoint, validation, export), and wait for them.
for M in tacotron2 waveglow; do [ -f /tmp/train_$M.pid ] && kill -USR1 $(cat /tmp/train_$M.pid) 2>/dev/null; done
for M in tacotron2 waveglow; do
  [ -f /tmp/train_$M.pid ] || continue
  while kill -0 $(cat /tmp/train_$M.pid) 2>/dev/null; do sleep 2; done; tail -n 1 /tmp/train_$M.log
done
