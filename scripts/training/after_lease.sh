#!/usr/bin/env bash
# Here, after a training lease, from the repository root: take in what send_back.sh returned and
# judge the voice it makes (CPU; ~80 minutes on two cores with WER_N=100, in the background if you like).
#   bash scripts/training/after_lease.sh /work/.device/N /work/.device/M   # the two send_back folders
# 1. each model's shards replace .train_carry/MODEL (the next piece's start) and are backed up in
#    $STATE (default /work/train_state/MODEL-stepS); its train.jsonl is appended to
#    docs/training/MODEL/train.jsonl, its alignment picture and corpus.json copied beside it;
# 2. the voice is exported to /tmp/demo_voice-T2STEP-WGSTEP (--corpus-json, --logs: its JSON
#    says how it was made);
# 3. the benchmarks of docs/training.md section 2 run on it, results in docs/training/ (names as below):
#    the WaveGlow alone on espeak-ng's mels, Whisper WER through Griffin-Lim (the Tacotron2 alone)
#    and through WaveGlow (the voice), and the stop token through the app (api) and on raw text.
# Needs the validation corpus in $CORPUS (default /tmp/valcorpus; docs/training.md section 2).
# JUDGE=0 stops after the export. WER_N sentences (default 100, all of them: 20 proved too few, LOG.md
# piece 7) for the WER checks; the voice's WER is the mean of seeds 0 and 1000 (one run, espeak-ng heard once).
set -eu
PY=${PYTHON:-python3}; CORPUS=${CORPUS:-/tmp/valcorpus}; STATE=${STATE:-/work/train_state}; WER_N=${WER_N:-100}
step() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['info']['step'])" "$1"; }
for D in "$@"; do
  for M in tacotron2 waveglow; do
    [ -f "$D/$M.json" ] || continue
    S=$(step "$D/$M.json")
    mkdir -p .train_carry/$M "$STATE/$M-step$S"
    chmod -R u+w .train_carry/$M; rm -f .train_carry/$M/*
    cp "$D/$M.json" "$D"/$M.fp16.*.safetensors .train_carry/$M/; chmod u+w .train_carry/$M/*
    cp .train_carry/$M/* "$STATE/$M-step$S/"
    cat "$D/train.jsonl" >> docs/training/$M/train.jsonl
    cp "$D"/alignment_*.png docs/training/$M/ 2>/dev/null || true
    [ -f "$D/corpus.json" ] && cp "$D/corpus.json" docs/training/corpus.json
    echo "$M: step $S in .train_carry/$M and $STATE/$M-step$S"
  done
done
T=$(step .train_carry/tacotron2/tacotron2.json); W=$(step .train_carry/waveglow/waveglow.json)
V=/tmp/demo_voice-$T-$W; R=docs/training
EXTRA=""; [ -f $R/corpus.json ] && EXTRA="--corpus-json $R/corpus.json"
$PY -m tts_desktop.train.export voice --tacotron2 .train_carry/tacotron2 --waveglow .train_carry/waveglow \
  --out $V --name demo --logs $R $EXTRA
[ "${JUDGE:-1}" = 0 ] && { echo "voice in $V (JUDGE=0: not judged)"; exit 0; }
E="$PY -m tts_desktop.train.evaluate"
$E vocoder --voice $V --corpus $CORPUS --n 5 --out $R/vocoder-wg$W.json | tail -n 8
$E wer --corpus $CORPUS --n $WER_N --voice $V --vocoder griffin-lim --out $R/wer-griffin-lim-step$T.json | tail -n 3
$E duration --voice $V --corpus $CORPUS --n 50 --backend api --device cpu --vocoder griffin-lim --out $R/duration-api-step$T.json | tail -n 12
$E wer --corpus $CORPUS --n $WER_N --voice $V --seed 0 1000 --out $R/wer-waveglow-step$T-wg$W.json | tail -n 3
$E duration --voice $V --corpus $CORPUS --n 50 --out $R/duration-step$T.json | tail -n 12
echo "voice $V judged; results in $R (step$T, wg$W)"
