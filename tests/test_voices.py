"""Voice discovery: bundled and user folders, names, paths, the default, staging folders."""

import pytest

from tts_desktop.model.random_voice import random_voice
from tts_desktop.model.config import Tacotron2Config, WaveGlowConfig
from tts_desktop.model.voice_files import VoiceError, save_voice
from tts_desktop.voices import find_voice, list_voices

TINY_T = Tacotron2Config(symbols_embedding_dim=16, encoder_embedding_dim=16, attention_rnn_dim=16, attention_dim=8,
                         attention_location_n_filters=4, decoder_rnn_dim=16, prenet_dim=8, postnet_embedding_dim=16)
TINY_W = WaveGlowConfig(n_flows=4, wn_n_layers=2, wn_n_channels=8)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    root = tmp_path / "voices"
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(root))
    monkeypatch.setattr("tts_desktop.voices.bundled_voices_dir", lambda: tmp_path / "bundled")
    for name in ("beta", "alpha"):
        config, t, w = random_voice(TINY_T, TINY_W, seed=1)
        save_voice(root / name, config, t, w, dtype="float16")
    (root / ".gamma.partial-x").mkdir()
    (root / ".gamma.partial-x" / "voice.json").write_text("{}")
    return root


def test_list_voices_sorted_and_skips_staging(user_dir):
    voices = list_voices()
    assert [v.path.name for v in voices] == ["alpha", "beta"]
    assert all(v.source == "user" and v.precision == "float16" and v.size_bytes > 0 for v in voices)


def test_find_voice_by_path_name_and_default(user_dir):
    assert find_voice(user_dir / "beta") == user_dir / "beta"
    assert find_voice("beta") == user_dir / "beta"
    assert find_voice(None) == user_dir / "alpha"  # no "demo" voice: the first one


def test_find_voice_errors(user_dir, tmp_path):
    with pytest.raises(VoiceError, match="no voice named or found at 'zeta'.*alpha, beta"):
        find_voice("zeta")
    (tmp_path / "plain").mkdir()
    with pytest.raises(VoiceError, match="not a voice folder"):
        find_voice(tmp_path / "plain")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(VoiceError, match="is a file"):
        find_voice(tmp_path / "file.txt")


def test_no_voice_installed_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_DESKTOP_VOICES", str(tmp_path / "none"))
    monkeypatch.setattr("tts_desktop.voices.bundled_voices_dir", lambda: tmp_path / "none2")
    with pytest.raises(VoiceError, match="tts-desktop import"):
        find_voice(None)
