"""Exit codes and the one-line messages the CLI prints instead of tracebacks."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1        # synthesis or export failed (for export: at least one line failed)
EXIT_USAGE = 2         # bad command-line arguments (argparse's own code)
EXIT_INPUT = 3         # bad input: voice, checkpoint, text or file that cannot be used
EXIT_NO_GPU = 4        # --device cuda asked for, but no usable GPU
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    success
  1    synthesis or export failed (export: at least one line failed; the rest were written)
  2    bad command-line arguments
  3    bad input: unusable voice, checkpoint, text or file
  4    --device cuda was asked for but no usable GPU was found
  130  interrupted (Ctrl+C)"""


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_INPUT):
        super().__init__(message)
        self.code = code


def friendly_error(e: BaseException) -> tuple[str | None, int]:
    """(message, exit code) for errors a user can act on; (None, _) for genuine bugs."""
    from tts_desktop.audio.files import AudioFileError
    from tts_desktop.download import DownloadCancelled, DownloadError
    from tts_desktop.model.checkpoint import CheckpointError
    from tts_desktop.model.voice_files import VoiceError
    from tts_desktop.text import TextError

    if isinstance(e, (TextError, VoiceError, CheckpointError, AudioFileError)):
        return str(e), EXIT_INPUT
    if isinstance(e, DownloadError):
        return str(e), EXIT_FAILED
    if isinstance(e, DownloadCancelled):
        return "download cancelled; run the same command again to resume", EXIT_INTERRUPTED
    if type(e).__name__ == "CompileError":  # a voice whose dimensions the kernels do not support
        from tts_desktop.engine.compile import headline
        first_line = headline(e)
        return f"the GPU engine cannot run this voice: {first_line} (use --device cpu)", EXIT_NO_GPU
    if type(e).__name__ == "GpuUnavailable":
        return f"no usable GPU: {e}", EXIT_NO_GPU
    if isinstance(e, ValueError):
        return str(e), EXIT_INPUT
    if isinstance(e, OSError):
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return f"{where}{e.strerror or e}", EXIT_INPUT
    if isinstance(e, MemoryError):
        return "out of memory", EXIT_FAILED
    return None, EXIT_FAILED
