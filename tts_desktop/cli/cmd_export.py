"""`tts-desktop export`: a phrase file to numbered WAV files, as NVIDIA's reference client names them.

Line N of the phrase file becomes N.wav (1-based, counting blank lines, so numbers always match
the file's line numbers). Blank lines give no file and are reported. A line that fails is
reported and the rest are still exported; the exit code says whether any failed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tts_desktop.cli.common import (add_synthesis_options, add_voice_options, check_engine_options,
                                    load_voice, report_capped, synthesis_options)
from tts_desktop.cli.errors import EXIT_FAILED, CliError


def add_parser(sub):
    p = sub.add_parser("export", help="export each line of a phrase file to N.wav",
                       description="Synthesize each line of PHRASES (line N -> DIR/N.wav). Blank lines are skipped.")
    p.add_argument("phrases", metavar="PHRASES", help="text file, one phrase per line (UTF-8)")
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="output folder (created if missing)")
    p.add_argument("--float", action="store_true", help="write 32-bit float samples instead of PCM_16")
    p.add_argument("--format", choices=("wav", "flac"), default="wav", help="file format (default wav)")
    add_voice_options(p)
    add_synthesis_options(p)
    return p


@dataclass
class ExportReport:
    written: list[Path]
    blank: list[int]               # line numbers
    failed: list[tuple[int, str]]  # (line number, reason)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0


def read_phrases(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CliError(f"cannot read {path}: not UTF-8 text (byte {e.start})") from e
    return text.splitlines()


def export_phrases(voice, lines: list[str], out_dir: Path, options, subtype: str = "pcm16",
                   suffix: str = ".wav", progress=None, cancel=None) -> ExportReport:
    """Synthesize every non-blank line to out_dir/N.suffix. Used by the CLI and the GUI."""
    from tts_desktop.api import SynthesisCancelled
    from tts_desktop.audio import write_audio

    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(written=[], blank=[], failed=[])
    todo = [(n, line) for n, line in enumerate(lines, start=1)]
    for done, (n, line) in enumerate(todo):
        if progress:
            progress(done, len(todo), n)
        if not line.strip():
            report.blank.append(n)
            continue
        try:
            result = voice.synthesize(line, options, cancel=cancel)
            report_capped(result.sentences, where=f" (line {n})")
            path = write_audio(out_dir / f"{n}{suffix}", result.audio, result.sample_rate, subtype)
        except SynthesisCancelled:
            raise
        except Exception as e:  # one bad line must not stop the others
            from tts_desktop.cli.errors import friendly_error

            message, _ = friendly_error(e)
            report.failed.append((n, message or f"{type(e).__name__}: {e}"))
            continue
        report.written.append(path)
        report.audio_seconds += result.audio_seconds
        report.compute_seconds += result.latency
    if progress:
        progress(len(todo), len(todo), None)
    return report


def run(args) -> int:
    check_engine_options(args)
    phrases = Path(args.phrases)
    lines = read_phrases(phrases)
    if not any(line.strip() for line in lines):
        raise CliError(f"{phrases} has no phrases: every line is blank")
    options = synthesis_options(args)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"{out_dir} exists and is not a folder")
    voice = load_voice(args)

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(lines), unit="line", file=sys.stderr)

    def progress(done, total, _line):
        if bar is not None:
            bar.n = done
            bar.refresh()

    try:
        report = export_phrases(voice, lines, out_dir, options, "float" if args.float else "pcm16",
                                "." + args.format, progress)
    finally:
        if bar is not None:
            bar.close()
    for n in report.blank:
        print(f"line {n}: blank, no file written", file=sys.stderr)
    for n, reason in report.failed:
        print(f"line {n}: FAILED: {reason}", file=sys.stderr)
    rtf = report.audio_seconds / report.compute_seconds if report.compute_seconds else 0.0
    print(f"wrote {len(report.written)} file(s) to {out_dir} ({report.audio_seconds:.1f} s of audio "
          f"in {report.compute_seconds:.1f} s, RTF {rtf:.1f}); {len(report.blank)} blank, "
          f"{len(report.failed)} failed")
    return EXIT_FAILED if report.failed else 0
