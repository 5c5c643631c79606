"""Audio playback for the window: a growable sample buffer fed sentence by sentence, played through
a sounddevice OutputStream whose callback pulls from it.

The buffer is separate from the stream so its logic (position, pause, volume, waiting for the next
sentence) can be exercised without an audio device. The PortAudio callback runs on PortAudio's own
thread, so every buffer access takes a lock; the GUI polls `position()` for the playhead instead of
receiving a signal per callback (hundreds a second would flood the event loop).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from PySide6.QtCore import QObject, Signal

from tts_desktop.audio.playback import playback_status


class PlaybackBuffer:
    """Samples to play plus a read position. Thread-safe: `fill` runs on the audio thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = np.zeros(0, np.float32)
        self._length = 0
        self._pos = 0
        self._complete = True     # no more samples are coming (False while sentences still stream in)
        self.paused = False
        self.volume = 1.0

    def reset(self, complete: bool = False) -> None:
        with self._lock:
            self._length = 0
            self._pos = 0
            self._complete = complete

    def append(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, np.float32).reshape(-1)
        with self._lock:
            need = self._length + len(audio)
            if need > len(self._data):
                # Doubling keeps appends amortised O(1) while sentences arrive one by one.
                grown = np.zeros(max(need, 2 * len(self._data), 1 << 16), np.float32)
                grown[: self._length] = self._data[: self._length]
                self._data = grown
            self._data[self._length : need] = audio
            self._length = need

    def set_complete(self, complete: bool = True) -> None:
        with self._lock:
            self._complete = complete

    def seek(self, sample: int) -> None:
        with self._lock:
            self._pos = int(min(max(sample, 0), self._length))

    def samples(self) -> np.ndarray:
        with self._lock:
            return self._data[: self._length].copy()

    @property
    def length(self) -> int:
        return self._length

    @property
    def position(self) -> int:
        return self._pos

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def at_end(self) -> bool:
        """Everything has been played and nothing more will come."""
        with self._lock:
            return self._complete and self._pos >= self._length

    def fill(self, out: np.ndarray) -> bool:
        """Write the next len(out) samples into `out` (silence where there are none yet).

        Returns False once the end of a complete buffer has been reached: the stream may stop.
        While paused, or while waiting for the next sentence, it writes silence and keeps going.
        """
        n = len(out)
        with self._lock:
            if self.paused:
                out[:] = 0
                return True
            take = min(n, self._length - self._pos)
            if take > 0:
                np.multiply(self._data[self._pos : self._pos + take], self.volume, out=out[:take])
                self._pos += take
            out[max(take, 0):] = 0
            return not (self._complete and self._pos >= self._length)


class AudioPlayer(QObject):
    """Plays the current utterance; reports 'playing', 'paused' or 'stopped' through `stateChanged`.

    When PortAudio or an output device is missing, `available` is False and `reason` says why;
    every method is then a harmless no-op apart from the buffer bookkeeping, so saving the audio
    still works.
    """

    stateChanged = Signal(str)
    _finished = Signal()    # emitted from PortAudio's thread; queued to the GUI thread

    def __init__(self, parent: QObject | None = None, status: tuple[bool, str] | None = None) -> None:
        super().__init__(parent)
        self.available, self.reason = status if status is not None else playback_status()
        self.buffer = PlaybackBuffer()
        self.sample_rate = 22050
        self._stream = None
        self._state = "stopped"
        self._finished.connect(self._on_finished)

    # ---- feeding
    def begin(self, sample_rate: int) -> None:
        """A new utterance: drop the old samples; sentences follow through `append`."""
        self.stop()
        self.sample_rate = int(sample_rate)
        self.buffer.reset(complete=False)

    def append(self, audio: np.ndarray) -> None:
        self.buffer.append(audio)

    def finish(self) -> None:
        """No more sentences for this utterance: playback stops when it reaches the end."""
        self.buffer.set_complete(True)

    # ---- transport
    @property
    def state(self) -> str:
        return self._state

    def play(self) -> None:
        if not self.available:
            return
        if self.buffer.at_end:
            self.buffer.seek(0)
        self.buffer.paused = False
        if self._stream is None:
            self._open_stream()
        self._set_state("playing")

    def pause(self) -> None:
        if self._state == "playing":
            self.buffer.paused = True
            self._set_state("paused")

    def toggle(self) -> None:
        self.pause() if self._state == "playing" else self.play()

    def replay(self) -> None:
        self.buffer.seek(0)
        self.play()

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # noqa: BLE001 - a vanished device must not break Stop
                pass
        self.buffer.paused = False
        self._set_state("stopped")

    def seek(self, seconds: float) -> None:
        self.buffer.seek(int(round(seconds * self.sample_rate)))

    def set_volume(self, volume: float) -> None:
        self.buffer.volume = float(min(max(volume, 0.0), 1.0))

    def position(self) -> float:
        return self.buffer.position / self.sample_rate

    def duration(self) -> float:
        return self.buffer.length / self.sample_rate

    # ---- PortAudio
    def _open_stream(self) -> None:
        import sounddevice as sd

        rate, started, sent = self.sample_rate, time.monotonic(), [0]

        def callback(outdata, frames, time_info, status):
            more = self.buffer.fill(outdata[:, 0])
            # Real outputs ask for samples at their playing rate. ALSA's "null" output (headless
            # machines, CI) asks ~1000x faster: this thread would spin a core, at normal priority
            # above the niced synthesis threads (priority.py), which then ran ~6x slower; the
            # playhead would also jump to the end. Hold it to real time, with half a second of slack
            # that no real device's buffering reaches.
            sent[0] += frames
            ahead = sent[0] / rate - (time.monotonic() - started)
            if ahead > 0.5:
                time.sleep(ahead - 0.25)
            if not more:
                raise sd.CallbackStop()

        def finished() -> None:   # PortAudio's C callback must get None back, not emit()'s bool
            self._finished.emit()

        try:
            stream = sd.OutputStream(samplerate=self.sample_rate, channels=1, dtype="float32",
                                     callback=callback, finished_callback=finished)
            stream.start()
        except Exception as e:  # noqa: BLE001 - PortAudioError: device busy, unplugged, bad rate
            self.available, self.reason = False, f"audio output failed: {e}"
            self._set_state("stopped")
            raise RuntimeError(self.reason) from e
        self._stream = stream

    def _on_finished(self) -> None:
        # The stream ended by itself (end of a complete buffer); a stop() already cleared it.
        if self._stream is not None and self.buffer.at_end:
            stream, self._stream = self._stream, None
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass
            self._set_state("stopped")

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(state)
