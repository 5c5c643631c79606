"""The demo voice's corpus: LJSpeech's transcripts spoken by espeak-ng, with mels ready to train.

    python -m tts_desktop.train.corpus --data /work/shared/data/ljspeech --out corpus --jobs 16

For each `ID|text` line of the data folder's train.txt and val.txt:
1. espeak-ng speaks `normalize(text)`, the exact symbols the model will read (numbers and
   abbreviations expanded by our own front-end, so audio and input always agree);
2. the audio is brought to 22050 Hz if espeak-ng gave another rate (it gives 22050 natively);
3. leading and trailing silence is trimmed the same way for every utterance (to exactly
   trim_pad samples before the first and after the last sound louder than peak - trim_top_db):
   the stop token then learns one consistent ending instead of a random amount of silence;
4. the mel is computed with the app's own front-end, `tts_desktop.model.mel.mel_spectrogram`, so
   training and synthesis share every constant.

Written out:
    OUT/wavs/ID.npy    int16 audio at 22050 Hz (what WaveGlow trains on)
    OUT/mels/ID.npy    float32 (80, n_samples // 256 + 1) natural-log mel (what Tacotron2 learns)
    OUT/manifest.jsonl one line per utterance: id, split, text, spoken, n_samples, n_frames, seconds
    OUT/corpus.json    the settings, espeak-ng's version, counts and hours

Utterances already on disk are kept (a second run only fills in what is missing), so an
interrupted run resumes. Nothing here needs torch: the GPU machine's Python has scipy and numpy.

espeak-ng from a private folder (the GPU machine has no package manager): unpack the .deb files
listed in docs/training.md with `dpkg -x FILE.deb ROOT` and pass `--espeak ROOT`; the binary
is ROOT/usr/bin/espeak-ng, its libraries are found through LD_LIBRARY_PATH and its data through
ESPEAK_DATA_PATH, both set here for the espeak-ng processes only. `--espeak` may also name the
binary itself (then LD_LIBRARY_PATH / ESPEAK_DATA_PATH are taken from the environment as they
are), and the TTS_ESPEAK environment variable stands in for the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io.wavfile
from scipy.signal import resample_poly

from tts_desktop.model.config import AudioConfig
from tts_desktop.model.mel import mel_spectrogram
from tts_desktop.text import TextError, normalize, text_to_sequence

SPLITS = ("train", "val")
MANIFEST = "manifest.jsonl"
CORPUS_JSON = "corpus.json"


@dataclass(frozen=True)
class CorpusConfig:
    voice: str = "en-us"
    rate: int = 165  # words per minute; espeak-ng's default 175 is brisk for a demo voice
    pitch: int = 50  # espeak-ng's defaults for pitch and amplitude
    amplitude: int = 100
    sample_rate: int = 22050
    trim_top_db: float = 40.0  # a stretch peaking this far below the loudest sample is silence...
    trim_floor: float = 1e-3  # ...as is one peaking below this (-60 dBFS), whatever the loudest
    trim_pad: int = 256  # samples of silence kept before the first and after the last sound


# ---------------------------------------------------------------------------------------------
# espeak-ng


def espeak_command(espeak: str | os.PathLike | None = None) -> tuple[str, dict[str, str]]:
    """(binary, environment) to run espeak-ng with; see the module doc for what `espeak` may be."""
    espeak = espeak or os.environ.get("TTS_ESPEAK") or shutil.which("espeak-ng")
    if not espeak:
        raise FileNotFoundError("espeak-ng not found: install it, or pass --espeak with an unpacked "
                                "folder (docs/training.md) or the binary")
    path = Path(espeak)
    env = dict(os.environ)
    if path.is_dir():  # a folder that .deb files were unpacked into
        binary = path / "usr" / "bin" / "espeak-ng"
        lib_dirs = sorted({str(p.parent) for p in path.rglob("*.so*") if p.is_file()})
        # the real data folder holds phontab (the .deb also ships a doc folder of the same name)
        data = [p.parent for p in path.rglob("espeak-ng-data") if (p / "phontab").is_file()]
        if not binary.is_file() or not data:
            raise FileNotFoundError(f"'{path}' has no usr/bin/espeak-ng and espeak-ng-data/phontab")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        env["ESPEAK_DATA_PATH"] = str(data[0])  # the folder that holds espeak-ng-data
    else:
        binary = path
    if not binary.is_file():
        raise FileNotFoundError(f"espeak-ng binary '{binary}' does not exist")
    return str(binary), env


def espeak_version(binary: str, env: dict[str, str]) -> str:
    """espeak-ng's version line without its 'Data at: PATH' tail (a machine's folder, not a fact of
    the corpus)."""
    result = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True, check=True)
    return result.stdout.split("Data at:")[0].strip()


def speak(text: str, cfg: CorpusConfig, binary: str, env: dict[str, str]) -> tuple[np.ndarray, int]:
    """espeak-ng's audio for `text`: float32 in [-1, 1] and its sample rate."""
    fd, wav_path = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        # the text goes in on stdin so that nothing in it can be taken for an option
        result = subprocess.run([binary, "-v", cfg.voice, "-s", str(cfg.rate), "-p", str(cfg.pitch),
                                 "-a", str(cfg.amplitude), "-w", wav_path],
                                input=text, text=True, env=env, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"espeak-ng failed ({result.returncode}): {result.stderr.strip()[:300]}")
        sr, audio = scipy.io.wavfile.read(wav_path)
    finally:
        os.unlink(wav_path)
    if audio.dtype != np.int16:
        raise ValueError(f"espeak-ng wrote {audio.dtype} samples, expected int16")
    return audio.astype(np.float32) / 32768.0, int(sr)


# ---------------------------------------------------------------------------------------------
# audio processing


def to_rate(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return audio
    g = np.gcd(sr, target)
    return resample_poly(audio, target // g, sr // g).astype(np.float32)


def trim(audio: np.ndarray, cfg: CorpusConfig, block: int = 64) -> np.ndarray:
    """The audio from `trim_pad` samples before the first sound to `trim_pad` after the last.

    Sound is a block of `block` samples whose peak is within trim_top_db of the loudest sample
    (and above trim_floor). The margins are made exactly trim_pad long, padding with zeros where
    espeak-ng left less silence than that, so every utterance starts and ends alike."""
    n_blocks = len(audio) // block
    if n_blocks == 0:
        return audio
    envelope = np.abs(audio[:n_blocks * block]).reshape(n_blocks, block).max(axis=1)
    threshold = max(float(envelope.max()) * 10 ** (-cfg.trim_top_db / 20), cfg.trim_floor)
    sound = np.flatnonzero(envelope > threshold)
    if sound.size == 0:
        return audio
    start, end = sound[0] * block - cfg.trim_pad, (sound[-1] + 1) * block + cfg.trim_pad
    padded = np.pad(audio, (max(0, -start), max(0, end - len(audio))))
    return padded[max(0, start):max(0, start) + end - start]


def process(text: str, cfg: CorpusConfig, binary: str, env: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """text -> (int16 audio at cfg.sample_rate, trimmed; float32 mel (80, frames))."""
    audio, sr = speak(normalize(text), cfg, binary, env)
    audio = to_rate(audio, sr, cfg.sample_rate)
    pcm = np.clip(np.round(trim(audio, cfg) * 32768.0), -32768, 32767).astype(np.int16)
    mel = mel_spectrogram(pcm.astype(np.float32) / 32768.0, AudioConfig(sampling_rate=cfg.sample_rate))
    return pcm, mel.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the corpus


def read_transcripts(path: Path) -> list[tuple[str, str]]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            utt_id, text = line.split("|", 1)
            items.append((utt_id.strip(), text.strip()))
    return items


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)  # a crash never leaves half a file under the real name


_worker: dict = {}


def _init_worker(cfg: CorpusConfig, binary: str, env: dict[str, str], out: str) -> None:
    _worker.update(cfg=cfg, binary=binary, env=env, out=Path(out))


def _make_one(item: tuple[str, str, str]) -> dict:
    """One utterance, written unless already there; returns its manifest record (or an error)."""
    split, utt_id, text = item
    out: Path = _worker["out"]
    wav_path, mel_path = utterance_files(out, utt_id)
    record = {"id": utt_id, "split": split, "text": text}
    try:
        text_to_sequence(text)  # the model must be able to read it
        record["spoken"] = normalize(text)
        if not (wav_path.is_file() and mel_path.is_file()):
            pcm, mel = process(text, _worker["cfg"], _worker["binary"], _worker["env"])
            _save_npy(wav_path, pcm)
            _save_npy(mel_path, mel)
        n_samples = int(np.load(wav_path, mmap_mode="r").shape[0])
        n_frames = int(np.load(mel_path, mmap_mode="r").shape[1])
    except (TextError, RuntimeError, ValueError, OSError) as err:
        record["error"] = f"{type(err).__name__}: {err}"
        return record
    sr = _worker["cfg"].sample_rate
    record.update(n_samples=n_samples, n_frames=n_frames, seconds=round(n_samples / sr, 4))
    return record


def build_corpus(data: Path, out: Path, cfg: CorpusConfig = CorpusConfig(), espeak=None,
                 jobs: int | None = None, limit: int | None = None, splits=SPLITS, log=print) -> dict:
    """Write the corpus (see the module doc); returns the summary also written to corpus.json."""
    binary, env = espeak_command(espeak)
    version = espeak_version(binary, env)
    items = []
    for split in splits:
        transcripts = read_transcripts(Path(data) / f"{split}.txt")
        items += [(split, utt_id, text) for utt_id, text in transcripts[:limit]]
    out = Path(out)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    (out / "mels").mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    log(f"{len(items)} utterances with {jobs} processes: {version}")

    t0 = time.perf_counter()
    records = []
    with multiprocessing.get_context("fork").Pool(jobs, _init_worker, (cfg, binary, env, str(out))) as pool:
        for i, record in enumerate(pool.imap_unordered(_make_one, items, chunksize=4), 1):
            records.append(record)
            if i % 500 == 0 or i == len(items):
                log(f"  {i}/{len(items)} in {time.perf_counter() - t0:.0f} s")
    order = {(split, utt_id): i for i, (split, utt_id, _) in enumerate(items)}
    records.sort(key=lambda r: order[(r["split"], r["id"])])
    good = [r for r in records if "error" not in r]
    failed = [r for r in records if "error" in r]
    for r in failed[:10]:
        log(f"  skipped {r['id']}: {r['error']}")
    if len(failed) > 10:
        log(f"  ... {len(failed) - 10} more skipped (all listed in {CORPUS_JSON})")

    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in good), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
    summary = {
        "config": dataclasses.asdict(cfg),
        "audio": AudioConfig(sampling_rate=cfg.sample_rate).to_dict(),
        "espeak": version,
        "utterances": {s: sum(r["split"] == s for r in good) for s in SPLITS},
        "hours": {s: round(sum(r["seconds"] for r in good if r["split"] == s) / 3600, 3) for s in SPLITS},
        "skipped": [r["id"] for r in failed],
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    (out / CORPUS_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log(f"corpus written to {out}: {summary['utterances']}, {summary['hours']} hours")
    return summary


def read_manifest(corpus: Path, split: str | None = None) -> list[dict]:
    lines = (Path(corpus) / MANIFEST).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if split is None or r["split"] == split]


def utterance_files(corpus: Path, utterance_id: str) -> tuple[Path, Path]:
    """Where a corpus folder keeps one utterance: its recording (int16 .npy), its mel (float32 .npy)."""
    corpus = Path(corpus)
    return corpus / "wavs" / f"{utterance_id}.npy", corpus / "mels" / f"{utterance_id}.npy"


def read_speech(corpus: Path, utterance_id: str) -> np.ndarray:
    """espeak-ng's recording of one utterance (stored as int16) as float32 in [-1, 1)."""
    return np.load(utterance_files(corpus, utterance_id)[0]).astype(np.float32) / 32768.0


def read_mel(corpus: Path, utterance_id: str) -> np.ndarray:
    """The mel of one utterance's recording, (n_mel, T), as stored."""
    return np.load(utterance_files(corpus, utterance_id)[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts_desktop.train.corpus", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.txt and val.txt (ID|text)")
    p.add_argument("--out", type=Path, required=True, help="corpus folder (created; resumed if it exists)")
    p.add_argument("--espeak", help="espeak-ng binary or a folder of unpacked .deb files (default: "
                                    "$TTS_ESPEAK, then espeak-ng on the PATH)")
    p.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--limit", type=int, default=None, help="only the first N lines of each split")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                   help="which transcript files to speak (val alone is enough for evaluate.py)")
    p.add_argument("--voice", default=CorpusConfig.voice)
    p.add_argument("--rate", type=int, default=CorpusConfig.rate, help="words per minute")
    args = p.parse_args(argv)
    cfg = CorpusConfig(voice=args.voice, rate=args.rate)
    summary = build_corpus(args.data, args.out, cfg, espeak=args.espeak, jobs=args.jobs, limit=args.limit,
                           splits=args.splits)
    return 0 if sum(summary["utterances"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
