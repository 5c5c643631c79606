#!/usr/bin/env bash
# On the GPU machine, from the repository root, carrying .whl, .fixtures and .dle: the whole GPU
# test suite in the foreground on a GPU nothing else uses (after a training lease's send_back.sh
# calls; ~2 minutes on the H100 in session 5). The log comes back as $OUT/gpu_tests.txt.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl .dle/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout ${TIMEOUT:-290} python3 -m pytest -q -p no:cacheprovider --tb=short ${GPU_TESTS:-tests/gpu tests/test_engine_cache.py} \
  > $OUT/gpu_tests.txt 2>&1
tail -n 15 $OUT/gpu_tests.txt
