"""Playback through sounddevice (PortAudio), with a clear reason where no output exists.

Importing sounddevice fails outright when the PortAudio library is missing, and a machine can
have PortAudio but no output device; both cases become `playback_status() == (False, reason)`
so callers can disable playback and explain why, instead of crashing.
"""

from __future__ import annotations


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: PortAudio library not found
        raise PlaybackUnavailable(f"PortAudio is not available ({e})") from e
    return sounddevice


class PlaybackUnavailable(RuntimeError):
    pass


def playback_status() -> tuple[bool, str]:
    """(True, device name) when audio can be played, else (False, why not). Never raises."""
    try:
        sd = _sounddevice()
        info = sd.query_devices(kind="output")
    except PlaybackUnavailable as e:
        return False, str(e)
    except Exception as e:  # PortAudioError and friends: no default output device
        return False, f"no audio output device ({e})"
    if not info or info.get("max_output_channels", 0) < 1:
        return False, "no audio output device"
    return True, str(info.get("name", "default output"))


def output_devices() -> list[str]:
    """Names of output devices PortAudio can see (empty when none or no PortAudio)."""
    try:
        sd = _sounddevice()
        return [d["name"] for d in sd.query_devices() if d.get("max_output_channels", 0) > 0]
    except Exception:
        return []


def play_blocking(audio, sample_rate: int) -> None:
    """Play audio to the default output and wait until it has finished."""
    ok, reason = playback_status()
    if not ok:
        raise PlaybackUnavailable(reason)
    sd = _sounddevice()
    sd.play(audio, sample_rate)
    sd.wait()
