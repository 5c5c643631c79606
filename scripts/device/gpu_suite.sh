#!/usr/bin/env bash
# On the GPU machine, from the repository root, carrying .whl, .fixtures and .dle: the whole GPU
# test suite in the foreground on a GPU nothing else uses (after a training lease's send_back.sh
# calls; ~2 minutes on the H100 in session 5). The log comes back as $OUT/gpu_tests.txt.
# The trained demo voice is too large to travel with the working tree (voice_aside.sh), so where
# both models' shards are on this machine (a training lease's exports or starting points, or
# .train_carry/MODEL carried by an earlier call and copied to /tmp/init_MODEL), the voice is built
# here from them and the trained-voice test runs on it (TTS_DESKTOP_TEST_VOICE). GPU_TESTS_K: a
# pytest -k expression (e.g. "not layer_kernel").
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl .dle/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
shards() { for d in /tmp/run_$1/export /tmp/init_$1 .train_carry/$1; do [ -f $d/$1.json ] && { echo $d; return; }; done; }
T=$(shards tacotron2); W=$(shards waveglow)
if [ -n "$T" ] && [ -n "$W" ] && python3 -m tts_desktop.train.export voice --tacotron2 $T --waveglow $W \
     --out /tmp/trained_voice --name demo > /dev/null; then
  export TTS_DESKTOP_TEST_VOICE=/tmp/trained_voice; echo "trained voice from $T + $W"
else
  echo "no trained voice here: its test will skip"
fi
timeout ${TIMEOUT:-290} python3 -m pytest -q -p no:cacheprovider --tb=short ${GPU_TESTS:-tests/gpu tests/test_engine_cache.py} \
  ${GPU_TESTS_K:+-k "$GPU_TESTS_K"} > $OUT/gpu_tests.txt 2>&1
tail -n 15 $OUT/gpu_tests.txt
