#!/usr/bin/env bash
# Wait up to SECONDS (default 0) for the background GPU tests of bench_paused.sh (or bench_then_tests.sh), then copy their log to $OUT.
for _ in $(seq 1 ${1:-0}); do pgrep -f "pytest -q -p no:cacheprovider" > /dev/null || break; sleep 1; done
cp /tmp/gpu_tests.log /tmp/gpu_measured/*.json $OUT/ 2>/dev/null; tail -n 30 /tmp/gpu_tests.log
