#!/usr/bin/env bash
# Put MODEL's exported shards, its log, its last alignment picture and the corpus's corpus.json in
# $OUT (<= 8 files, <= 60 MiB).
M=$1
while kill -0 $(cat /tmp/train_$M.pid) 2>/dev/null; do sleep 3; done
cp /tmp/run_$M/export/* $OUT/ && cp /tmp/run_$M/log/train.jsonl $OUT/ && cp /tmp/corpus/corpus.json $OUT/
cp "$(ls /tmp/run_$M/log/alignment_*.png 2>/dev/null | tail -n 1)" $OUT/ 2>/dev/null || true; ls -la $OUT
