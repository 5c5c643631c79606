"""WAV/FLAC writing: formats, scaling that never wraps, atomic writes, clear errors."""

import os

import numpy as np
import pytest
import soundfile as sf

from tts_desktop.audio import AudioFileError, read_audio, to_pcm_range, write_audio


@pytest.fixture
def rng():
    return np.random.default_rng()


def test_pcm16_round_trip_keeps_quiet_audio_unscaled(tmp_path, rng):
    audio = (0.5 * rng.uniform(-1, 1, 22050)).astype(np.float32)
    path = write_audio(tmp_path / "a.wav", audio, 22050)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (22050, 1, "PCM_16", "WAV")
    back, sr = read_audio(path)
    assert sr == 22050 and len(back) == len(audio)
    assert np.abs(back - audio).max() <= 1.0 / 32767 + 1e-6


def test_loud_audio_is_scaled_down_never_wrapped(tmp_path, rng):
    audio = rng.uniform(-1, 1, 4000).astype(np.float32) * 3.0
    audio[123] = 3.0  # the peak: must become full scale, not wrap to negative
    back, _ = read_audio(write_audio(tmp_path / "loud.wav", audio, 22050))
    assert back[123] > 0.999
    assert np.sign(back[np.abs(audio) > 0.1]).tolist() == np.sign(audio[np.abs(audio) > 0.1]).tolist()
    np.testing.assert_allclose(back, audio / 3.0, atol=2.0 / 32767)


def test_float_wav_is_bit_exact(tmp_path, rng):
    audio = rng.standard_normal(1000).astype(np.float32) * 2.5
    path = write_audio(tmp_path / "f.wav", audio, 16000, "float")
    assert sf.info(str(path)).subtype == "FLOAT"
    back, sr = read_audio(path)
    assert sr == 16000 and np.array_equal(back, audio)


def test_flac(tmp_path, rng):
    audio = (0.3 * rng.uniform(-1, 1, 5000)).astype(np.float32)
    path = write_audio(tmp_path / "x.flac", audio, 22050)
    assert sf.info(str(path)).format == "FLAC"
    with pytest.raises(AudioFileError, match="FLAC stores integer"):
        write_audio(tmp_path / "y.flac", audio, 22050, "float")


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(AudioFileError, match=r"\.wav or \.flac"):
        write_audio(tmp_path / "a.mp3", np.zeros(10, np.float32), 22050)
    with pytest.raises(ValueError, match="NaN"):
        to_pcm_range(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ValueError, match="mono"):
        to_pcm_range(np.zeros((2, 10), np.float32))
    with pytest.raises(AudioFileError, match="cannot write"):
        write_audio(tmp_path / "missing" / "a.wav", np.zeros(10, np.float32), 22050)
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    with pytest.raises(AudioFileError, match="cannot read"):
        read_audio(tmp_path / "junk.wav")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "keep.wav"
    write_audio(target, np.full(100, 0.25, np.float32), 22050)
    before = target.read_bytes()

    def broken_write(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sf, "write", broken_write)
    with pytest.raises(AudioFileError, match="No space left"):
        write_audio(target, np.zeros(100, np.float32), 22050)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]


def test_written_files_get_the_umask_mode_or_keep_the_replaced_files(tmp_path, rng):
    """tempfile's private 0o600 must not leak into a user's exports."""
    audio = (0.1 * rng.uniform(-1, 1, 2205)).astype(np.float32)
    old = os.umask(0o022)
    try:
        new = write_audio(tmp_path / "a.wav", audio, 22050)
        assert new.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert write_audio(tmp_path / "b.wav", audio, 22050).stat().st_mode & 0o777 == 0o600
        os.chmod(new, 0o640)  # an existing file keeps its mode when it is written again
        assert write_audio(new, audio, 22050).stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
