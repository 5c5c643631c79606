"""tts_desktop.download against a local HTTP server (127.0.0.1 only) serving the golden checkpoints.

The server logs every request (file, Range header, status) so the tests can tell a resumed
transfer from a restarted one; its behaviours (drop the connection, ignore Range, announce more
bytes than it sends, stall) are switched per test.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tts_desktop import download
from tts_desktop.download import (BASE_URL_ENV, DownloadCancelled, DownloadError, download_voice,
                                  fetch_file)

pytestmark = pytest.mark.timeout(60)

from checkpoint_server import T_NAME, W_NAME  # noqa: E402  (the `server` fixture lives in conftest.py)


def _no_voice(voices: Path) -> bool:
    return not (voices / "nvidia-ljspeech").exists()


def test_full_download_gives_a_loadable_voice(server, tmp_path, monkeypatch):
    from tts_desktop.model.voice_files import load_voice

    monkeypatch.setenv(BASE_URL_ENV, server.url)      # the environment variable route
    seen = []
    voice = download_voice("nvidia-ljspeech", tmp_path, progress=lambda f, m: seen.append((f, m)))

    assert voice == tmp_path / "nvidia-ljspeech"
    config, tacotron2, waveglow = load_voice(voice)
    assert tacotron2 and waveglow
    # The catalogue's file names, each fetched once, whole.
    assert server.log == [(T_NAME, None, 200), (W_NAME, None, 200)]
    assert not (tmp_path / download.CACHE_DIR_NAME).exists()
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("MiB" in m for _, m in seen)

    # Installed already: returned as it is, no request made.
    assert download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url) == voice
    assert len(server.log) == 2


def test_dropped_connection_resumes_with_range(server, tmp_path):
    size = len(server.files[T_NAME])
    server.drop_after[T_NAME] = 100_000
    dest = tmp_path / T_NAME

    with pytest.raises(DownloadError, match=rf"interrupted after 100000 of {size} bytes.*resume"):
        fetch_file(f"{server.url}/{T_NAME}", dest, retries=0)
    assert (tmp_path / (T_NAME + ".partial")).stat().st_size == 100_000 and not dest.exists()

    fetch_file(f"{server.url}/{T_NAME}", dest, retries=0)
    assert dest.read_bytes() == server.files[T_NAME]
    assert server.log == [(T_NAME, None, 200), (T_NAME, "bytes=100000-", 206)]
    assert not (tmp_path / (T_NAME + ".partial")).exists()


def test_download_voice_resumes_a_drop_by_itself(server, tmp_path):
    server.drop_after[W_NAME] = 3_000_000
    voice = download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert (voice / "voice.json").is_file()
    assert server.log == [(T_NAME, None, 200), (W_NAME, None, 200), (W_NAME, "bytes=3000000-", 206)]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.ignore_range = True
    partial = tmp_path / (T_NAME + ".partial")
    partial.write_bytes(b"\xff" * 5000)    # wrong bytes: appending to them would corrupt the file
    dest = fetch_file(f"{server.url}/{T_NAME}", tmp_path / T_NAME)
    assert dest.read_bytes() == server.files[T_NAME]
    assert server.log == [(T_NAME, "bytes=5000-", 200)]


def test_complete_partial_file_answered_416(server, tmp_path):
    (tmp_path / (T_NAME + ".partial")).write_bytes(server.files[T_NAME])
    dest = fetch_file(f"{server.url}/{T_NAME}", tmp_path / T_NAME)
    assert dest.read_bytes() == server.files[T_NAME]
    assert server.log == [(T_NAME, f"bytes={len(server.files[T_NAME])}-", 416)]


def test_partial_longer_than_the_file_starts_over(server, tmp_path):
    (tmp_path / (T_NAME + ".partial")).write_bytes(server.files[T_NAME] + b"junk")
    dest = fetch_file(f"{server.url}/{T_NAME}", tmp_path / T_NAME)
    assert dest.read_bytes() == server.files[T_NAME]
    assert [status for _, _, status in server.log] == [416, 200]


def test_http_404_is_a_clear_error(server, tmp_path):
    del server.files[T_NAME]
    with pytest.raises(DownloadError, match=rf"answered HTTP 404 .*{T_NAME}"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert _no_voice(tmp_path)


def test_fewer_bytes_than_content_length_fails(server, tmp_path):
    # Every response claims 10 bytes more than it sends; Range is ignored so no retry can complete.
    server.extra_length = 10
    server.ignore_range = True
    size = len(server.files[T_NAME])
    with pytest.raises(DownloadError, match=rf"interrupted after {size} of {size + 10} bytes"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert _no_voice(tmp_path)
    assert len(server.log) == 1 + download.RETRIES


def test_size_other_than_published_is_refused(server, tmp_path, monkeypatch):
    entry = download.CATALOGUE["nvidia-ljspeech"]
    wrong = len(server.files[T_NAME]) + 1
    monkeypatch.setitem(download.CATALOGUE, "nvidia-ljspeech", download.CatalogueEntry(
        entry.name, entry.description, download.RemoteFile(entry.tacotron2.url, wrong), entry.waveglow))
    with pytest.raises(DownloadError, match=rf"published size is {wrong}"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert _no_voice(tmp_path)


def test_corrupt_checkpoint_is_rejected_and_deleted(server, tmp_path):
    server.files[T_NAME] = bytes(range(256)) * 64
    with pytest.raises(DownloadError, match=rf"{T_NAME} is not a usable Tacotron2 checkpoint"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert _no_voice(tmp_path)
    cache = tmp_path / download.CACHE_DIR_NAME / "nvidia-ljspeech"
    assert not list(cache.iterdir())               # neither the bad file nor a partial is kept
    assert [name for name, _, _ in server.log] == [T_NAME]   # WaveGlow was not even fetched


def test_checkpoints_that_do_not_fit_together_are_not_kept(server, tmp_path, monkeypatch):
    from tts_desktop.model import importer

    def refuse(*args, **kwargs):
        raise importer.CheckpointLayoutError("the two checkpoints do not fit together")

    monkeypatch.setattr(importer, "import_voice", refuse)
    with pytest.raises(DownloadError, match="cannot be imported: the two checkpoints do not fit"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert _no_voice(tmp_path)
    assert not (tmp_path / download.CACHE_DIR_NAME / "nvidia-ljspeech").exists()


def test_connection_refused_says_so(tmp_path):
    with socket.socket() as s:          # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"cannot reach 127\.0\.0\.1:{port}: .*refused.*"
                                            "check your internet connection"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=f"http://127.0.0.1:{port}/x")
    assert _no_voice(tmp_path)


def test_silent_server_times_out(server, tmp_path):
    server.stall = threading.Event()
    with pytest.raises(DownloadError, match=r"cannot reach 127\.0\.0\.1:\d+: .*timed out"):
        download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url, timeout=0.5)
    assert _no_voice(tmp_path)


def test_cancel_keeps_the_partial_file_for_resume(server, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3           # three chunks go through, then the user cancels

    with pytest.raises(DownloadCancelled):
        download_voice("nvidia-ljspeech", tmp_path, cancel=cancel, base_url_override=server.url)
    partial = tmp_path / download.CACHE_DIR_NAME / "nvidia-ljspeech" / (T_NAME + ".partial")
    kept = partial.stat().st_size
    assert 0 < kept < len(server.files[T_NAME])
    assert _no_voice(tmp_path)

    voice = download_voice("nvidia-ljspeech", tmp_path, base_url_override=server.url)
    assert (voice / "voice.json").is_file()
    assert server.log[1] == (T_NAME, f"bytes={kept}-", 206)


def test_unknown_voice_lists_the_catalogue(tmp_path):
    with pytest.raises(DownloadError, match="available: nvidia-ljspeech"):
        download_voice("nope", tmp_path)
