"""Download NVIDIA's published Tacotron2 + WaveGlow checkpoints and import them as a voice.

`download_voice("nvidia-ljspeech", voices_dir)` is what `tts-desktop voices download` and the GUI's
Import dialog call. Each checkpoint is fetched with the standard library (urllib: no extra
dependency, and redirects, proxies from the environment and TLS come for free) into
`voices_dir/.downloads/<voice>/<file>.partial`. An interrupted transfer resumes where it stopped,
with an HTTP Range request, both within one call (a dropped connection that had delivered data is
retried at once) and across calls (the partial file is kept). A finished file is checked for size
(the published size where we know it, else the server's Content-Length / Content-Range total) and
for structure (the importer's loaders), then both are imported into `voices_dir/<voice>` and the
download cache is removed.

`TTS_DESKTOP_DOWNLOAD_BASE_URL` (or `base_url_override`) replaces everything before a file's name in
the catalogue's URLs: a mirror, or a test server, serves both files from one folder.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from tts_desktop import __version__

BASE_URL_ENV = "TTS_DESKTOP_DOWNLOAD_BASE_URL"
CACHE_DIR_NAME = ".downloads"        # inside the voices folder; list_voices skips it (no voice.json)
PARTIAL_SUFFIX = ".partial"
CHUNK = 64 * 1024                    # small enough that cancel() is checked often on a slow link
PROGRESS_STEP = 1 << 20              # report bytes at most once per MiB: a GUI signal each, not per chunk
DOWNLOAD_SHARE = 0.85                # of the overall fraction; the structural checks and import take the rest
RETRIES = 3                          # immediate resumes after a connection drops mid-transfer

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


class DownloadError(Exception):
    """A download that cannot go on: no network, an HTTP error, a wrong size, an unusable file."""


class DownloadCancelled(Exception):
    """cancel() returned true; the partial file is kept, so the next call resumes."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int | None = None   # bytes as published; None: trust the server's Content-Length

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CatalogueEntry:
    name: str                 # also the voice folder's name
    description: str
    tacotron2: RemoteFile
    waveglow: RemoteFile


# The URLs of DeepLearningExamples' torch.hub entry points (PyTorch/SpeechSynthesis/Tacotron2,
# tacotron2/entrypoints.py and waveglow/entrypoints.py, model_math="fp32"). NGC publishes no byte
# sizes we could confirm, so the sizes are left to the server's headers.
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia"
CATALOGUE: dict[str, CatalogueEntry] = {
    "nvidia-ljspeech": CatalogueEntry(
        name="nvidia-ljspeech",
        description="NVIDIA's Tacotron2 + WaveGlow trained on LJ Speech (NGC, fp32, 19.09.0)",
        tacotron2=RemoteFile(f"{_NGC}/tacotron2_pyt_ckpt_fp32/versions/19.09.0/files/"
                             "nvidia_tacotron2pyt_fp32_20190427"),
        waveglow=RemoteFile(f"{_NGC}/waveglow_ckpt_fp32/versions/19.09.0/files/"
                            "nvidia_waveglowpyt_fp32_20190427"),
    ),
}


class _Interrupted(Exception):
    """The body ended early or the connection failed mid-transfer; the partial file is intact."""

    def __init__(self, reason: str, progressed: bool, total: int | None):
        super().__init__(reason)
        self.progressed = progressed    # this attempt wrote bytes before failing
        self.total = total              # the file's size as this attempt's response stated it


class _Restart(Exception):
    """The partial file cannot be continued (the server's answer contradicts it): start from zero."""


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _resolve(url: str, base: str | None) -> str:
    return f"{base.rstrip('/')}/{url.rsplit('/', 1)[-1]}" if base else url


def _int_header(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from 'bytes 100-199/200' or 'bytes */200'; None where absent or '*'."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start, total = m.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def fetch_file(url: str, dest: str | Path, *, expected_size: int | None = None,
               progress: Callable[[int, int | None], None] | None = None,
               cancel: Cancel | None = None, timeout: float = 30, retries: int = RETRIES) -> Path:
    """Download `url` to `dest` through `dest.partial`, resuming what an earlier call left there.

    progress(bytes_done, total_or_None); cancel() is checked between chunks. `dest` appears only
    once the size is verified. Raises DownloadError, or DownloadCancelled (partial file kept).
    """
    dest = Path(dest)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    partial.parent.mkdir(parents=True, exist_ok=True)
    known_total = expected_size
    attempts = 0
    while True:
        try:
            total = _attempt(url, partial, known_total, expected_size is not None, progress, cancel,
                             timeout)
            break
        except _Interrupted as e:
            known_total = e.total if e.total is not None else known_total
            have = partial.stat().st_size if partial.exists() else 0
            # A connection that delivered data before failing is worth resuming at once; one that
            # delivered nothing would most likely fail the same way again.
            if e.progressed and attempts < retries:
                attempts += 1
                continue
            of = f" of {known_total}" if known_total is not None else ""
            raise DownloadError(f"download of {dest.name} from {_host(url)} was interrupted after "
                                f"{have}{of} bytes ({e}); the partial file is kept: run again to "
                                "resume") from None
        except _Restart as e:
            partial.unlink(missing_ok=True)
            known_total = expected_size
            attempts += 1
            if attempts > retries:
                raise DownloadError(f"download of {dest.name} from {_host(url)} failed: {e}") from None
    size = partial.stat().st_size
    if total is not None and size != total:
        # More bytes than announced, or (no size announced) not the published size: the file
        # cannot be trusted, nor resumed.
        partial.unlink()
        raise DownloadError(f"{dest.name} from {_host(url)}: received {size} bytes, but the size "
                            f"should be {total}; the partial file was deleted")
    os.replace(partial, dest)
    return dest


def _attempt(url: str, partial: Path, known_total: int | None, total_is_published: bool,
             progress, cancel, timeout) -> int | None:
    """One request: continue `partial` (or restart it); return the file's total size if known."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={
        "User-Agent": f"tts-desktop/{__version__}",
        "Accept-Encoding": "identity",     # the byte counts must be those of the file itself
    })
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and have:
                # "Range not satisfiable": the partial file may already hold the whole file.
                _, total = _content_range(e.headers.get("Content-Range"))
                if total == have and known_total in (None, have):
                    return total
                raise _Restart(f"the server cannot continue a {have}-byte partial file "
                               f"(its size: {total if total is not None else 'not stated'})")
            raise DownloadError(f"{_host(url)} answered HTTP {e.code} ({e.reason}) for {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        kept = "; the partial download is kept" if have else ""
        raise DownloadError(f"cannot reach {_host(url)}: {reason} — check your internet "
                            f"connection{kept}") from None

    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:
                raise _Restart(f"asked for bytes from {have}, the server sent them from {start}")
            mode = "ab"
        elif response.status == 200:
            # No Range was sent, or the server ignored it: the body is the whole file.
            have, mode = 0, "wb"
            total = _int_header(response.headers.get("Content-Length"))
        else:
            raise DownloadError(f"{_host(url)} answered HTTP {response.status} for {url}")
        if total is not None and known_total is not None and total != known_total:
            if total_is_published:
                raise DownloadError(f"{_host(url)} offers {partial.stem} with {total} bytes, but the "
                                    f"published size is {known_total}: not downloading it")
            if mode == "ab":
                # The file changed on the server since the earlier attempt: the bytes do not mix.
                raise _Restart(f"the file's size changed from {known_total} to {total} bytes")

        got = reported = 0
        with open(partial, mode) as f:
            while True:
                if cancel is not None and cancel():
                    raise DownloadCancelled(f"download of {partial.stem} cancelled after "
                                            f"{have + got} bytes")
                try:
                    chunk = response.read1(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Interrupted(str(e) or type(e).__name__, got > 0, total) from None
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                if progress is not None and got - reported >= PROGRESS_STEP:
                    reported = got
                    progress(have + got, total)
        if total is not None and have + got < total:
            raise _Interrupted("the connection closed early", got > 0, total)
        if progress is not None:
            progress(have + got, total)
        return total if total is not None else known_total


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def download_voice(entry_name: str, dest_voices_dir: str | Path, progress: Progress | None = None,
                   cancel: Cancel | None = None, base_url_override: str | None = None,
                   timeout: float = 30) -> Path:
    """Download the catalogue voice `entry_name` and import it as `dest_voices_dir/<name>`.

    progress(fraction, message); cancel() is polled between chunks and raises DownloadCancelled.
    An already installed voice is returned as it is, without touching the network.
    """
    entry = CATALOGUE.get(entry_name)
    if entry is None:
        raise DownloadError(f"no downloadable voice named {entry_name!r} "
                            f"(available: {', '.join(sorted(CATALOGUE))})")
    from tts_desktop.model.checkpoint import CheckpointError
    from tts_desktop.model.importer import import_voice, load_tacotron2, load_waveglow

    report = progress or (lambda fraction, message: None)
    voices_dir = Path(dest_voices_dir)
    voice_dir = voices_dir / entry.name
    if (voice_dir / "voice.json").is_file():
        report(1.0, f"{entry.name} is already installed in {voice_dir}")
        return voice_dir

    cache = voices_dir / CACHE_DIR_NAME / entry.name
    base = base_url_override or os.environ.get(BASE_URL_ENV) or None
    parts = (("Tacotron2", entry.tacotron2, load_tacotron2), ("WaveGlow", entry.waveglow, load_waveglow))
    # Sizes are not known before each response arrives, so each file gets an equal share of the
    # bar: the bar moves at different speeds, but never backwards.
    share = DOWNLOAD_SHARE / len(parts)
    paths = []
    for i, (model, remote, load) in enumerate(parts):
        path = cache / remote.filename

        def on_bytes(done: int, total: int | None, i=i, name=remote.filename) -> None:
            if total:
                report((i + done / total) * share, f"downloading {name}: {_mib(done)} of {_mib(total)}")
            else:
                report(i * share, f"downloading {name}: {_mib(done)}")

        # A file already in the cache passed its size check in an earlier call.
        if not path.is_file():
            report(i * share, f"downloading {remote.filename} from {_host(_resolve(remote.url, base))}")
            fetch_file(_resolve(remote.url, base), path, expected_size=remote.size, progress=on_bytes,
                       cancel=cancel, timeout=timeout)
        if cancel is not None and cancel():
            raise DownloadCancelled(f"download of {entry.name} cancelled")
        report((i + 1) * share, f"checking {remote.filename}")
        try:
            load(path)
        except CheckpointError as e:
            # Resuming would only reuse the bad bytes: drop them so the next call starts afresh.
            path.unlink(missing_ok=True)
            raise DownloadError(f"the downloaded file {remote.filename} is not a usable {model} "
                                f"checkpoint ({e}); it was deleted: run again to download it "
                                "afresh") from e
        paths.append(path)

    def on_import(fraction: float, message: str) -> None:
        report(DOWNLOAD_SHARE + (1 - DOWNLOAD_SHARE) * fraction, message)

    report(DOWNLOAD_SHARE, f"importing {entry.name}")
    try:
        out = import_voice(paths[0], paths[1], voice_dir, name=entry.name, progress=on_import)
    except CheckpointError as e:
        # Each file passed its own check, so they do not fit together (or this app's symbol
        # table): downloading them again would not help, keeping hundreds of MB would not either.
        shutil.rmtree(cache, ignore_errors=True)
        raise DownloadError(f"the downloaded checkpoints cannot be imported: {e}") from e
    shutil.rmtree(cache, ignore_errors=True)
    try:
        cache.parent.rmdir()          # .downloads, when no other voice's download is pending
    except OSError:
        pass
    report(1.0, f"{entry.name} installed in {out}")
    return Path(out)
